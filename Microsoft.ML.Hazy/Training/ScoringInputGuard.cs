using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Training;

/// <summary>A scoring input that the model cannot read, named by column and row.</summary>
internal sealed class HazyInputException : InvalidOperationException
{
    public HazyInputException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}

/// <summary>
/// Keeps Hazy's messages about bad scoring input visible. ML.NET reads a transform's input on worker threads and
/// rethrows any failure as "Splitter/consolidator worker encountered exception while consuming source data", with the
/// cause only in <see cref="Exception.InnerException"/>; so the rows are checked on the way in (where the row index is
/// known) and the outermost exception on the way out carries the Hazy message, with ML.NET's exception inside it.
/// </summary>
internal static class ScoringInputGuard
{
    /// <summary>
    /// <paramref name="input"/> with every row of <paramref name="column"/> checked against the longest row the model
    /// accepts, <paramref name="maximumValues"/> values (<paramref name="channels"/> per time step).
    /// </summary>
    public static IDataView CheckRowLength(IDataView input, string column, int channels, int maximumValues) =>
        new GuardedDataView(input, column, channels, maximumValues);

    /// <summary><paramref name="output"/> whose cursors rethrow a wrapped Hazy input error as the outermost exception.</summary>
    public static IDataView SurfaceErrors(IDataView output) => new GuardedDataView(output, null, 0, 0);

    /// <summary>The Hazy input error inside <paramref name="exception"/>, or null.</summary>
    public static HazyInputException? Find(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HazyInputException hazy)
                return hazy;
            if (e is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    if (Find(inner) is { } found)
                        return found;
                }
            }
        }
        return null;
    }

    /// <summary>Whether a Hazy input error is wrapped inside <paramref name="exception"/> (an exception filter must not throw).</summary>
    private static bool Wraps(Exception exception) => Find(exception) is { } hazy && !ReferenceEquals(hazy, exception);

    /// <summary>The wrapped Hazy input error's message outermost, with <paramref name="exception"/> inside.</summary>
    private static HazyInputException Surface(Exception exception) => new(Find(exception)!.Message, exception);

    /// <summary>
    /// A pass-through view: with a column it checks that column's row lengths, without one it surfaces wrapped errors.
    /// It hands out one cursor, so row positions are row indices and no consolidator of the reader wraps its exceptions again.
    /// </summary>
    private sealed class GuardedDataView : IDataView
    {
        private readonly IDataView _source;
        private readonly string? _column;
        private readonly int _channels;
        private readonly int _maximumValues;

        public GuardedDataView(IDataView source, string? column, int channels, int maximumValues)
        {
            _source = source;
            _column = column;
            _channels = channels;
            _maximumValues = maximumValues;
        }

        public bool CanShuffle => _source.CanShuffle;

        public DataViewSchema Schema => _source.Schema;

        public long? GetRowCount() => _source.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
        {
            try
            {
                return new Cursor(this, _source.GetRowCursor(columnsNeeded, rand));
            }
            catch (Exception e) when (Wraps(e))
            {
                throw Surface(e);
            }
        }

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };

        private sealed class Cursor : DataViewRowCursor
        {
            private readonly GuardedDataView _parent;
            private readonly DataViewRowCursor _input;

            public Cursor(GuardedDataView parent, DataViewRowCursor input)
            {
                _parent = parent;
                _input = input;
            }

            public override DataViewSchema Schema => _input.Schema;

            public override long Position => _input.Position;

            public override long Batch => _input.Batch;

            public override bool MoveNext()
            {
                try
                {
                    return _input.MoveNext();
                }
                catch (Exception e) when (Wraps(e))
                {
                    throw Surface(e);
                }
            }

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                var getter = _input.GetGetter<TValue>(column);
                if (_parent._column is { } checkedColumn)
                {
                    if (column.Name != checkedColumn || getter is not ValueGetter<VBuffer<float>> values)
                        return getter;
                    ValueGetter<VBuffer<float>> checkedGetter = (ref VBuffer<float> value) =>
                    {
                        values(ref value);
                        if (value.Length > _parent._maximumValues)
                            throw TooLong(checkedColumn, value.Length);
                    };
                    return (ValueGetter<TValue>)(Delegate)checkedGetter;
                }
                return (ref TValue value) =>
                {
                    try
                    {
                        getter(ref value);
                    }
                    catch (Exception e) when (Wraps(e))
                    {
                        throw Surface(e);
                    }
                };
            }

            private HazyInputException TooLong(string column, int values)
            {
                int channels = Math.Max(1, _parent._channels);
                return new HazyInputException(
                    $"Column '{column}' row {Position} has {values} values ({values / channels} time steps of {channels} channel(s)); this model accepts " +
                    $"at most {_parent._maximumValues} values ({_parent._maximumValues / channels} steps) per row. Train with a larger MaximumLength " +
                    "(SequenceTrainer.Options.MaximumLength, or the maximumLength parameter of HazyS4D) to score longer rows.");
            }

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
}
