using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// The automatic validation set of <see cref="HazyTrainerOptions.ValidationFraction"/>: a stratified, seeded share of the
/// training rows held out when no <see cref="HazyTrainerOptions.ValidationSet"/> is given.
/// </summary>
internal static class ValidationSplit
{
    /// <summary>
    /// Which rows to hold out: of each stratum's n rows, round(<paramref name="fraction"/> · n) chosen at random with
    /// <paramref name="seed"/>, leaving at least one row of every stratum to train on.
    /// </summary>
    public static bool[] HoldOut(IReadOnlyList<ulong> strata, double fraction, int seed)
    {
        var holdOut = new bool[strata.Count];
        var random = new Random(seed);
        foreach (var group in strata.Select((s, row) => (s, row)).GroupBy(p => p.s).OrderBy(g => g.Key))
        {
            var rows = group.Select(p => p.row).ToArray();
            int take = Math.Min(rows.Length - 1, (int)Math.Round(fraction * rows.Length, MidpointRounding.AwayFromZero));
            random.Shuffle(rows);
            for (int i = 0; i < take; i++)
                holdOut[rows[i]] = true;
        }
        return holdOut;
    }

    /// <summary>
    /// The training options and data to train with: when <see cref="HazyTrainerOptions.ValidationFraction"/> applies, a copy
    /// whose validation set is the held-out rows (keeping the best epoch's weights) and the remaining rows; otherwise the inputs.
    /// </summary>
    public static (HazyTrainerOptions Options, IDataView Train) Apply(HazyTrainerOptions options, IDataView data, LabelKind labelKind, int seed, IChannel channel)
    {
        TrainingBudget.Check(options);
        if (options.ValidationFraction == 0 || options.ValidationSet is not null)
            return (options, data);
        var strata = ReadStrata(data, options.LabelColumnName, labelKind);
        if (strata.Count < Math.Max(2, options.MinimumRowsForValidationSplit))
        {
            channel.Info(MessageSensitivity.None,
                $"No automatic validation split: {strata.Count} training rows, fewer than MinimumRowsForValidationSplit = {options.MinimumRowsForValidationSplit}.");
            return (options, data);
        }
        var holdOut = HoldOut(strata, options.ValidationFraction, seed);
        int held = holdOut.Count(h => h);
        if (held == 0)
            return (options, data);
        var copy = options.ShallowCopy();
        copy.ValidationSet = new RowSubsetDataView(data, holdOut, true);
        // Without a patience the loop would keep the last epoch's weights; a held-out set is there to pick the best one.
        if (copy.EarlyStoppingPatience == 0)
            copy.EarlyStoppingPatience = int.MaxValue;
        channel.Info(MessageSensitivity.None,
            $"Automatic validation split: {held} of {strata.Count} rows held out ({options.ValidationFraction:P0}{(labelKind == LabelKind.Single ? "" : ", stratified by class")}); " +
            "the model keeps the weights of the epoch with the lowest validation loss.");
        return (copy, new RowSubsetDataView(data, holdOut, false));
    }

    /// <summary>Each row's stratum: its class for a key or Boolean label, one stratum for a numeric label.</summary>
    private static List<ulong> ReadStrata(IDataView data, string labelColumn, LabelKind kind)
    {
        var column = data.Schema.GetColumnOrNull(labelColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(labelColumn), $"Column '{labelColumn}' not found in the training data.");
        var strata = new List<ulong>();
        using var cursor = data.GetRowCursor(kind == LabelKind.Single ? Array.Empty<DataViewSchema.Column>() : new[] { column });
        if (kind == LabelKind.Key)
        {
            var getter = cursor.GetGetter<uint>(column);
            uint v = 0;
            while (cursor.MoveNext())
            {
                getter(ref v);
                strata.Add(v);
            }
        }
        else if (kind == LabelKind.Boolean)
        {
            var getter = cursor.GetGetter<bool>(column);
            bool v = false;
            while (cursor.MoveNext())
            {
                getter(ref v);
                strata.Add(v ? 1UL : 0UL);
            }
        }
        else
        {
            while (cursor.MoveNext())
                strata.Add(0);
        }
        return strata;
    }
}

/// <summary>The rows of a data view whose flag in a row mask equals <c>keep</c>, in their order.</summary>
internal sealed class RowSubsetDataView : IDataView
{
    private readonly IDataView _source;
    private readonly bool[] _mask;
    private readonly bool _keep;
    private readonly long _count;

    public RowSubsetDataView(IDataView source, bool[] mask, bool keep)
    {
        _source = source;
        _mask = mask;
        _keep = keep;
        _count = mask.LongCount(m => m == keep);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema => _source.Schema;

    public long? GetRowCount() => _count;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        new Cursor(this, _source.GetRowCursor(columnsNeeded));

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly RowSubsetDataView _parent;
        private readonly DataViewRowCursor _input;
        private long _position = -1;
        private long _sourceRow = -1;

        public Cursor(RowSubsetDataView parent, DataViewRowCursor input)
        {
            _parent = parent;
            _input = input;
        }

        public override DataViewSchema Schema => _input.Schema;

        public override long Position => _position;

        public override long Batch => 0;

        public override bool MoveNext()
        {
            while (_input.MoveNext())
            {
                _sourceRow++;
                if (_sourceRow < _parent._mask.Length && _parent._mask[_sourceRow] == _parent._keep)
                {
                    _position++;
                    return true;
                }
            }
            return false;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => _input.GetGetter<TValue>(column);

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _input.IsColumnActive(column);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                _input.Dispose();
            base.Dispose(disposing);
        }
    }
}
