using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Data;

/// <summary>How a label column is turned into a tensor.</summary>
internal enum LabelKind
{
    /// <summary>A key column: class index (key − 1) as int64.</summary>
    Key,
    /// <summary>A <see cref="float"/> column (regression target) as float32.</summary>
    Single,
    /// <summary>A <see cref="bool"/> column as float32 0 or 1.</summary>
    Boolean,
}

/// <summary>One batch of rows as tensors; disposing it frees the tensors.</summary>
internal sealed class TensorBatch : IDisposable
{
    public TensorBatch(Tensor features, Tensor? labels, Tensor? lengths, int count)
    {
        Features = features;
        Labels = labels;
        Lengths = lengths;
        Count = count;
    }

    /// <summary>[B, D] for a fixed-size vector; [B, L, C] when channels are set (L = the longest in the batch for variable lengths).</summary>
    public Tensor Features { get; }

    public Tensor? Labels { get; }

    /// <summary>Time steps of each row (int64 [B]) when the feature column has a channel layout.</summary>
    public Tensor? Lengths { get; }

    public int Count { get; }

    public void Dispose()
    {
        Features.Dispose();
        Labels?.Dispose();
        Lengths?.Dispose();
    }
}

/// <summary>
/// Reads an <see cref="IDataView"/> through a cursor into TorchSharp batches, one batch in memory at a time.
/// The feature column is a vector of <see cref="float"/>: of known size, or of variable size holding
/// whole time steps of <c>channels</c> values each (padded with zeros to the longest row of the batch).
/// </summary>
internal sealed class DataViewBatcher
{
    private readonly IDataView _data;
    private readonly DataViewSchema.Column _features;
    private readonly DataViewSchema.Column? _label;
    private readonly LabelKind _labelKind;
    private readonly int _channels;
    private readonly bool _checkFinite;
    private readonly string _where;

    /// <summary>Reads <paramref name="data"/>; <paramref name="dataName"/> names it in error messages ("validation set"), null for the training data.</summary>
    public DataViewBatcher(IDataView data, string featureColumn, string? labelColumn, LabelKind labelKind,
        int channels = 0, bool checkFinite = true, string? dataName = null)
    {
        _data = data ?? throw new ArgumentNullException(nameof(data));
        _features = SchemaChecks.FloatVectorColumn(data.Schema, featureColumn, requireKnownSize: channels == 0);
        FeatureSize = ((VectorDataViewType)_features.Type).Size;
        _channels = channels;
        if (channels > 0 && FeatureSize > 0 && FeatureSize % channels != 0)
            throw new ArgumentOutOfRangeException(nameof(channels),
                $"Column '{featureColumn}' has {FeatureSize} values per row, which is not a whole number of time steps of {channels} channels.");
        if (labelColumn != null)
        {
            _label = SchemaChecks.LabelColumn(data.Schema, labelColumn, labelKind);
            _labelKind = labelKind;
        }
        _checkFinite = checkFinite;
        _where = dataName is null ? "" : $" of the {dataName}";
    }

    /// <summary>Values per row; 0 for a variable-size column.</summary>
    public int FeatureSize { get; }

    public string FeatureColumnName => _features.Name;

    /// <summary>Rows in the data, counting them with a cursor when the view does not know.</summary>
    public long CountRows()
    {
        long? n = _data.GetRowCount();
        if (n is long known)
            return known;
        long count = 0;
        using var cursor = _data.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        while (cursor.MoveNext())
            count++;
        return count;
    }

    /// <summary>
    /// The most values any row holds (the vector size for a known-size column). For a variable-size column it
    /// reads every row in order, so a row that is not a whole number of time steps is reported by its index
    /// here rather than by its position in a shuffled epoch.
    /// </summary>
    public int LongestRow()
    {
        if (FeatureSize > 0)
            return FeatureSize;
        int longest = 0;
        long row = 0;
        using var cursor = _data.GetRowCursor(new[] { _features });
        var getter = cursor.GetGetter<VBuffer<float>>(_features);
        var buffer = default(VBuffer<float>);
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            if (_channels > 0 && buffer.Length % _channels != 0)
                throw new InvalidOperationException(
                    $"Column '{_features.Name}' row {row}{_where} has {buffer.Length} values, which is not a whole number of time steps of {_channels} channels.");
            if (_channels > 0 && buffer.Length == 0)
                throw EmptySequence(row);
            longest = Math.Max(longest, buffer.Length);
            row++;
        }
        return longest;
    }

    /// <summary>Rows held by the streaming shuffle when the data view cannot shuffle itself.</summary>
    public const int ShufflePoolSize = 8192;

    /// <summary>
    /// Batches in cursor order, or shuffled with <paramref name="shuffleSeed"/>: through the view's own
    /// random-order cursor when it has one, else through a pool of <see cref="ShufflePoolSize"/> rows on
    /// this thread (ML.NET's ShuffleRows reads on a background thread, which TorchSharp code must not race).
    /// </summary>
    public IEnumerable<TensorBatch> GetBatches(int batchSize, int? shuffleSeed, Device device)
    {
        if (batchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be positive.");
        var rows = ReadRows(shuffleSeed is int s && _data.CanShuffle ? new Random(s) : null);
        if (shuffleSeed is int seed && !_data.CanShuffle)
            rows = PoolShuffle(rows, new Random(seed));

        // The lists grow to the batch, so a batch size beyond the row count allocates only what the rows need.
        int capacity = Math.Min(batchSize, ShufflePoolSize);
        var features = new List<float[]>(capacity);
        var labels = new List<float>(capacity);
        foreach (var (x, y) in rows)
        {
            features.Add(x);
            labels.Add(y);
            if (features.Count == batchSize)
            {
                yield return MakeBatch(features, labels, device);
                features.Clear();
                labels.Clear();
            }
        }
        if (features.Count > 0)
            yield return MakeBatch(features, labels, device);
    }

    /// <summary>
    /// The rows with their checks. A random-order cursor's position is not the row's index, so a check that
    /// fails there is reported again by a pass in cursor order, which names the first bad row by its index.
    /// </summary>
    private IEnumerable<(float[] Features, float Label)> ReadRows(Random? rand)
    {
        var columns = _label is { } l ? new[] { _features, l } : new[] { _features };
        using var cursor = _data.GetRowCursor(columns, rand);
        var featureGetter = cursor.GetGetter<VBuffer<float>>(_features);
        var labelReader = _label is { } lab ? MakeLabelReader(cursor, lab) : null;
        var buffer = default(VBuffer<float>);
        long row = 0;
        while (cursor.MoveNext())
        {
            float[] values;
            float label;
            try
            {
                featureGetter(ref buffer);
                values = new float[buffer.Length];
                buffer.CopyTo(values);
                if (_checkFinite)
                    CheckFinite(values, row);
                if (FeatureSize == 0 && _channels > 0 && values.Length % _channels != 0)
                    throw new InvalidOperationException(
                        $"Column '{_features.Name}' row {row}{_where} has {values.Length} values, which is not a whole number of time steps of {_channels} channels.");
                if (FeatureSize == 0 && _channels > 0 && values.Length == 0)
                    throw EmptySequence(row);
                label = labelReader?.Invoke(row) ?? 0f;
            }
            catch (InvalidOperationException) when (rand != null)
            {
                foreach (var _ in ReadRows(null))
                {
                }
                throw;
            }
            yield return (values, label);
            row++;
        }
    }

    private static IEnumerable<T> PoolShuffle<T>(IEnumerable<T> source, Random rand)
    {
        var pool = new List<T>(ShufflePoolSize);
        foreach (var item in source)
        {
            if (pool.Count < ShufflePoolSize)
            {
                pool.Add(item);
                continue;
            }
            int j = rand.Next(pool.Count);
            yield return pool[j];
            pool[j] = item;
        }
        for (int i = pool.Count - 1; i >= 0; i--)
        {
            int j = rand.Next(i + 1);
            yield return pool[j];
            pool[j] = pool[i];
        }
    }

    private Func<long, float> MakeLabelReader(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        switch (_labelKind)
        {
            case LabelKind.Key:
            {
                var getter = cursor.GetGetter<uint>(column);
                uint v = 0;
                return row =>
                {
                    getter(ref v);
                    if (v == 0)
                        throw new InvalidOperationException($"Column '{column.Name}' row {row}{_where} has a missing key value (0); every training row needs a class.");
                    return v - 1;
                };
            }
            case LabelKind.Boolean:
            {
                var getter = cursor.GetGetter<bool>(column);
                bool v = false;
                return _ =>
                {
                    getter(ref v);
                    return v ? 1f : 0f;
                };
            }
            default:
            {
                var getter = cursor.GetGetter<float>(column);
                float v = 0;
                return row =>
                {
                    getter(ref v);
                    if (!float.IsFinite(v))
                        throw new InvalidOperationException($"Column '{column.Name}' row {row}{_where} has the non-finite label {v}.");
                    return v;
                };
            }
        }
    }

    // A row without steps has nothing to pool: its masked mean would be 0/0 and turn the batch's loss into NaN.
    private InvalidOperationException EmptySequence(long row) =>
        new($"Column '{_features.Name}' row {row}{_where} has no time steps (0 values); every sequence row needs at least one step of {_channels} value(s).");

    private void CheckFinite(float[] values, long row)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new InvalidOperationException(
                    $"Column '{_features.Name}' row {row}{_where} slot {i} is {values[i]}; expected finite values (NaN and infinity are not allowed).");
        }
    }

    private TensorBatch MakeBatch(List<float[]> rows, List<float> labels, Device device)
    {
        int b = rows.Count;
        Tensor features;
        Tensor? lengths = null;
        if (_channels == 0)
        {
            int d = rows[0].Length;
            var flat = new float[b * d];
            for (int i = 0; i < b; i++)
                rows[i].CopyTo(flat, i * d);
            features = tensor(flat, new long[] { b, d }, device: device);
        }
        else
        {
            int maxSteps = rows.Max(r => r.Length) / _channels;
            var flat = new float[b * maxSteps * _channels];
            var steps = new long[b];
            for (int i = 0; i < b; i++)
            {
                rows[i].CopyTo(flat, i * maxSteps * _channels);
                steps[i] = rows[i].Length / _channels;
            }
            features = tensor(flat, new long[] { b, maxSteps, _channels }, device: device);
            lengths = tensor(steps, device: device);
        }
        Tensor? labelTensor = null;
        if (_label != null)
        {
            labelTensor = _labelKind == LabelKind.Key
                ? tensor(labels.Select(v => (long)v).ToArray(), device: device)
                : tensor(labels.ToArray(), device: device);
        }
        return new TensorBatch(features, labelTensor, lengths, b);
    }
}
