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

/// <summary>How a named batch column is read: its type and, for a vector, its shape and padding.</summary>
internal enum BatchColumnKind
{
    /// <summary>A Single, or a Boolean as 0/1: float32 [B].</summary>
    Scalar,
    /// <summary>A key: the index (key − 1) as int64 [B]; a missing key (0) is an error.</summary>
    Key,
    /// <summary>A vector of Single or Boolean (0/1): float32 [B, D], or [B, L, C] with channels; variable sizes are padded.</summary>
    Vector,
}

/// <summary>
/// A named column a batch carries besides the features and the label: an example weight, a mask, a second input, a group id.
/// </summary>
/// <param name="Name">The name the batch gives it (<see cref="TensorBatch.ExampleWeight"/>, "Mask", ...).</param>
/// <param name="ColumnName">The data view's column.</param>
/// <param name="Kind">How it is read.</param>
/// <param name="Channels">For a vector: values per time step, giving [B, L, C]; 0 gives [B, D].</param>
/// <param name="PaddingValue">For a variable-size vector: the value rows are padded with to the longest of the batch.</param>
/// <param name="NonNegative">For a scalar: reject negative values (weights).</param>
internal sealed record BatchColumn(string Name, string ColumnName, BatchColumnKind Kind, int Channels = 0, float PaddingValue = 0f, bool NonNegative = false);

/// <summary>One batch of rows as tensors; disposing it frees the tensors.</summary>
internal sealed class TensorBatch : IDisposable
{
    /// <summary>The batch column holding each row's example weight (float32 [B], non-negative).</summary>
    public const string ExampleWeight = "ExampleWeight";

    /// <summary>The suffix of the int64 [B] row lengths (in time steps, or values without channels) of a variable-size named column.</summary>
    public const string LengthsSuffix = ".Lengths";

    private readonly IReadOnlyDictionary<string, Tensor> _columns;
    private readonly bool _owns = true;

    public TensorBatch(Tensor features, Tensor? labels, Tensor? lengths, int count, IReadOnlyDictionary<string, Tensor>? columns = null)
    {
        Features = features;
        Labels = labels;
        Lengths = lengths;
        Count = count;
        _columns = columns ?? new Dictionary<string, Tensor>();
    }

    /// <summary>[B, D] for a fixed-size vector; [B, L, C] when channels are set (L = the longest in the batch for variable lengths).</summary>
    public Tensor Features { get; }

    public Tensor? Labels { get; }

    /// <summary>Time steps of each row (int64 [B]) when the feature column has a channel layout.</summary>
    public Tensor? Lengths { get; }

    public int Count { get; }

    /// <summary>The named columns (and the lengths of variable-size ones, under their name + <see cref="LengthsSuffix"/>).</summary>
    public IReadOnlyDictionary<string, Tensor> Columns => _columns;

    private TensorBatch(TensorBatch source, Tensor features)
        : this(features, source.Labels, source.Lengths, source.Count, source._columns) => _owns = false;

    /// <summary>
    /// The same rows with other features (a second view, or features that require gradients for an input-gradient
    /// penalty); it shares this batch's tensors and disposing it frees none of them.
    /// </summary>
    public TensorBatch WithFeatures(Tensor features) => new(this, features ?? throw new ArgumentNullException(nameof(features)));

    /// <summary>The named column <paramref name="name"/>, if the batch carries it.</summary>
    public bool TryGetColumn(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Tensor? column) => _columns.TryGetValue(name, out column);

    /// <summary>The named column <paramref name="name"/>; throws naming the columns the batch has.</summary>
    public Tensor Column(string name) => _columns.TryGetValue(name, out var column) ? column
        : throw new KeyNotFoundException($"The batch has no column '{name}'; it has {(_columns.Count == 0 ? "none" : string.Join(", ", _columns.Keys.Select(k => $"'{k}'")))}.");

    public void Dispose()
    {
        if (!_owns)
            return;
        Features.Dispose();
        Labels?.Dispose();
        Lengths?.Dispose();
        foreach (var column in _columns.Values)
            column.Dispose();
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
    private readonly (BatchColumn Spec, DataViewSchema.Column Column, int Size)[] _named;

    /// <summary>
    /// Reads <paramref name="data"/>; <paramref name="dataName"/> names it in error messages ("validation set"), null for the
    /// training data. <paramref name="columns"/> are further named columns every batch carries.
    /// </summary>
    public DataViewBatcher(IDataView data, string featureColumn, string? labelColumn, LabelKind labelKind,
        int channels = 0, bool checkFinite = true, string? dataName = null, IReadOnlyList<BatchColumn>? columns = null)
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
        _named = (columns ?? Array.Empty<BatchColumn>()).Select(c => NamedColumn(data.Schema, c)).ToArray();
        var duplicate = _named.GroupBy(c => c.Spec.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null)
            throw new ArgumentException($"Two batch columns are named '{duplicate.Key}'.", nameof(columns));
    }

    private (BatchColumn, DataViewSchema.Column, int) NamedColumn(DataViewSchema schema, BatchColumn spec)
    {
        var column = schema.GetColumnOrNull(spec.ColumnName)
            ?? throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{spec.ColumnName}'{_where} not found; expected {Expected(spec)}.");
        var type = column.Type;
        bool ok = spec.Kind switch
        {
            BatchColumnKind.Scalar => type == NumberDataViewType.Single || type == BooleanDataViewType.Instance,
            BatchColumnKind.Key => type is KeyDataViewType,
            _ => type is VectorDataViewType v && (v.ItemType == NumberDataViewType.Single || v.ItemType == BooleanDataViewType.Instance),
        };
        if (!ok)
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{spec.ColumnName}'{_where} has type {type}; expected {Expected(spec)}.");
        int size = type is VectorDataViewType vector ? vector.Size : 1;
        if (spec.Kind == BatchColumnKind.Vector && spec.Channels > 0 && size > 0 && size % spec.Channels != 0)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Column '{spec.ColumnName}'{_where} has {size} values per row, which is not a whole number of time steps of {spec.Channels} channels.");
        return (spec, column, size);
    }

    private static string Expected(BatchColumn spec) => spec.Kind switch
    {
        BatchColumnKind.Scalar => "Single or Boolean",
        BatchColumnKind.Key => "a key type",
        _ => "a vector of Single or Boolean",
    };

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
        var named = new List<double[][]>(capacity);
        foreach (var (x, y, extra) in rows)
        {
            features.Add(x);
            labels.Add(y);
            named.Add(extra);
            if (features.Count == batchSize)
            {
                yield return MakeBatch(features, labels, named, device);
                features.Clear();
                labels.Clear();
                named.Clear();
            }
        }
        if (features.Count > 0)
            yield return MakeBatch(features, labels, named, device);
    }

    /// <summary>
    /// The rows with their checks. A random-order cursor's position is not the row's index, so a check that
    /// fails there is reported again by a pass in cursor order, which names the first bad row by its index.
    /// </summary>
    private IEnumerable<(float[] Features, float Label, double[][] Named)> ReadRows(Random? rand)
    {
        var columns = (_label is { } l ? new[] { _features, l } : new[] { _features }).Concat(_named.Select(c => c.Column)).Distinct().ToArray();
        using var cursor = _data.GetRowCursor(columns, rand);
        var featureGetter = cursor.GetGetter<VBuffer<float>>(_features);
        var labelReader = _label is { } lab ? MakeLabelReader(cursor, lab) : null;
        var namedReaders = _named.Select(c => MakeNamedReader(cursor, c.Spec, c.Column)).ToArray();
        var buffer = default(VBuffer<float>);
        long row = 0;
        while (cursor.MoveNext())
        {
            float[] values;
            float label;
            double[][] named;
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
                named = new double[namedReaders.Length][];
                for (int c = 0; c < namedReaders.Length; c++)
                    named[c] = namedReaders[c](row);
            }
            catch (InvalidOperationException) when (rand != null)
            {
                foreach (var _ in ReadRows(null))
                {
                }
                throw;
            }
            yield return (values, label, named);
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

    /// <summary>Reads one named column of the current row: one value for a scalar or key, the row's values for a vector.</summary>
    private Func<long, double[]> MakeNamedReader(DataViewRowCursor cursor, BatchColumn spec, DataViewSchema.Column column)
    {
        string At(long row) => FormattableString.Invariant($"Column '{column.Name}' row {row}{_where}");
        if (spec.Kind == BatchColumnKind.Key)
        {
            var getter = cursor.GetGetter<uint>(column);
            uint v = 0;
            return row =>
            {
                getter(ref v);
                if (v == 0)
                    throw new InvalidOperationException(At(row) + " has a missing key value (0).");
                return new double[] { v - 1 };
            };
        }
        if (spec.Kind == BatchColumnKind.Scalar)
        {
            Func<double> read;
            if (column.Type == BooleanDataViewType.Instance)
            {
                var getter = cursor.GetGetter<bool>(column);
                bool b = false;
                read = () => { getter(ref b); return b ? 1 : 0; };
            }
            else
            {
                var getter = cursor.GetGetter<float>(column);
                float f = 0;
                read = () => { getter(ref f); return f; };
            }
            return row =>
            {
                double v = read();
                if (!double.IsFinite(v) || (spec.NonNegative && v < 0))
                    throw new InvalidOperationException(At(row) +
                        $" is {v}; expected a finite{(spec.NonNegative ? ", non-negative" : "")} value.");
                return new double[] { v };
            };
        }
        Func<double[]> readVector;
        if (((VectorDataViewType)column.Type).ItemType == BooleanDataViewType.Instance)
        {
            var getter = cursor.GetGetter<VBuffer<bool>>(column);
            var buffer = default(VBuffer<bool>);
            readVector = () => { getter(ref buffer); return buffer.DenseValues().Select(b => b ? 1.0 : 0.0).ToArray(); };
        }
        else
        {
            var getter = cursor.GetGetter<VBuffer<float>>(column);
            var buffer = default(VBuffer<float>);
            readVector = () => { getter(ref buffer); return buffer.DenseValues().Select(f => (double)f).ToArray(); };
        }
        return row =>
        {
            var values = readVector();
            if (spec.Channels > 0 && values.Length % spec.Channels != 0)
                throw new InvalidOperationException(At(row) +
                    $" has {values.Length} values, which is not a whole number of time steps of {spec.Channels} channels.");
            if (_checkFinite && values.Any(v => !double.IsFinite(v)))
                throw new InvalidOperationException(At(row) + " has a value that is not finite.");
            return values;
        };
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

    private TensorBatch MakeBatch(List<float[]> rows, List<float> labels, List<double[][]> named, Device device)
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
        Dictionary<string, Tensor>? columns = null;
        if (_named.Length > 0)
        {
            columns = new Dictionary<string, Tensor>();
            for (int c = 0; c < _named.Length; c++)
                AddNamed(columns, _named[c].Spec, _named[c].Size, named.Select(r => r[c]).ToList(), device);
        }
        return new TensorBatch(features, labelTensor, lengths, b, columns);
    }

    /// <summary>[B] for a scalar or key; [B, D] or [B, L, C] for a vector, variable sizes padded to the batch's longest with their lengths beside.</summary>
    private static void AddNamed(Dictionary<string, Tensor> columns, BatchColumn spec, int size, List<double[]> rows, Device device)
    {
        int b = rows.Count;
        if (spec.Kind == BatchColumnKind.Key)
        {
            columns[spec.Name] = tensor(rows.Select(r => (long)r[0]).ToArray(), device: device);
            return;
        }
        if (spec.Kind == BatchColumnKind.Scalar)
        {
            columns[spec.Name] = tensor(rows.Select(r => (float)r[0]).ToArray(), device: device);
            return;
        }
        int width = rows.Max(r => r.Length);
        var flat = new float[b * width];
        if (spec.PaddingValue != 0f)
            Array.Fill(flat, spec.PaddingValue);
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < rows[i].Length; j++)
                flat[i * width + j] = (float)rows[i][j];
        }
        long[] shape = spec.Channels > 0 ? new long[] { b, width / spec.Channels, spec.Channels } : new long[] { b, width };
        columns[spec.Name] = tensor(flat, shape, device: device);
        if (size == 0)
        {
            int per = Math.Max(1, spec.Channels);
            columns[spec.Name + TensorBatch.LengthsSuffix] = tensor(rows.Select(r => (long)(r.Length / per)).ToArray(), device: device);
        }
    }
}
