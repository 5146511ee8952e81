using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Sequence.MiniRocket;

/// <summary>
/// A fitted MiniRocket featurizer (see <see cref="MiniRocketEstimator"/>): adds a known-size vector of PPV features computed
/// row by row from a series column. It is not persistable: <c>mlContext.Model.Save</c> throws <see cref="NotSupportedException"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type |
/// | -- | -- |
/// | <see cref="InputColumnName"/> | vector of Single: time-major steps of <see cref="Channels"/> values, any length (at least one step) |
/// | <see cref="OutputColumnName"/> | vector of Single of size <see cref="FeatureCount"/>, values in [0, 1] |
/// ]]></format>
/// </remarks>
public sealed class MiniRocketTransformer : ITransformer
{
    private readonly MiniRocketKernels _kernels;

    internal MiniRocketTransformer(MiniRocketKernels kernels, string inputColumnName, string outputColumnName)
    {
        _kernels = kernels;
        InputColumnName = inputColumnName;
        OutputColumnName = outputColumnName;
    }

    /// <summary>The series column read.</summary>
    public string InputColumnName { get; }

    /// <summary>The feature column written.</summary>
    public string OutputColumnName { get; }

    /// <summary>Values per time step.</summary>
    public int Channels => _kernels.Channels;

    /// <summary>The number of features per row (a multiple of 84).</summary>
    public int FeatureCount => _kernels.FeatureCount;

    /// <summary>The dilations of the kernels, chosen for <see cref="ReferenceLength"/> steps.</summary>
    public IReadOnlyList<int> Dilations => _kernels.Dilations;

    /// <summary>The series length the dilations were chosen for.</summary>
    public int ReferenceLength => _kernels.ReferenceLength;

    internal MiniRocketKernels Kernels => _kernels;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => false;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        CheckInput(inputSchema, InputColumnName);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(OutputColumnName, new VectorDataViewType(NumberDataViewType.Single, FeatureCount));
        return builder.ToSchema();
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) =>
        throw new NotSupportedException("MiniRocketTransformer has no row-to-row mapper; use Transform on an IDataView.");

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new FeatureDataView(input, GetOutputSchema(input.Schema), this);
    }

    /// <summary>Not supported: see the remarks of <see cref="MiniRocketEstimator"/>.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(
            "A MiniRocketTransformer cannot be saved with mlContext.Model.Save: ML.NET keeps the persistence of third-party transformers internal, "
            + "and MiniRocket has no ONNX export yet. Fit the MiniRocket featurizer again (it is deterministic for a seed) before the saved trainer's model, "
            + "or save the features and the linear model separately.");

    /// <summary>The features of one series row (time-major, <see cref="Channels"/> values per step).</summary>
    /// <param name="series">The row's values.</param>
    /// <returns><see cref="FeatureCount"/> PPV features.</returns>
    public float[] Featurize(float[] series)
    {
        ArgumentNullException.ThrowIfNull(series);
        CheckRow(series, Channels, InputColumnName, "the series", 0);
        var features = new float[FeatureCount];
        _kernels.Transform(series, features);
        return features;
    }

    internal static DataViewSchema.Column CheckInput(DataViewSchema schema, string column) =>
        SchemaChecks.FloatVectorColumn(schema, column, requireKnownSize: false);

    internal static void CheckRow(float[] values, int channels, string column, string dataName, long row)
    {
        if (values.Length == 0 || values.Length % channels != 0)
            throw new InvalidOperationException(
                $"Row {row} of column '{column}' in {dataName} has {values.Length} values; expected a positive whole number of time steps of {channels} channel(s).");
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new InvalidOperationException(
                    $"Row {row} of column '{column}' in {dataName} has the value {values[i]} at step {i / channels}, channel {i % channels}; expected finite values.");
        }
    }

    internal static IEnumerable<float[]> ReadRows(IDataView data, DataViewSchema.Column column, int channels, string dataName)
    {
        using var cursor = data.GetRowCursor(new[] { column });
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        var buffer = default(VBuffer<float>);
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            var values = buffer.DenseValues().ToArray();
            CheckRow(values, channels, column.Name, dataName, cursor.Position);
            yield return values;
        }
    }

    /// <summary>The input plus the feature column, computed row by row as a cursor reads it.</summary>
    private sealed class FeatureDataView : IDataView
    {
        private readonly IDataView _input;
        private readonly MiniRocketTransformer _owner;

        public FeatureDataView(IDataView input, DataViewSchema schema, MiniRocketTransformer owner)
        {
            _input = input;
            _owner = owner;
            Schema = schema;
        }

        public DataViewSchema Schema { get; }

        public bool CanShuffle => _input.CanShuffle;

        public long? GetRowCount() => _input.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
        {
            var needed = columnsNeeded.ToArray();
            int outputIndex = Schema.Count - 1;
            bool wantsOutput = needed.Any(c => c.Index == outputIndex);
            var inputColumns = needed.Where(c => c.Index != outputIndex).Select(c => _input.Schema[c.Index]).ToList();
            if (wantsOutput)
                inputColumns.Add(_input.Schema[_owner.InputColumnName]);
            return new Cursor(this, _input.GetRowCursor(inputColumns.Distinct(), rand), wantsOutput);
        }

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };

        private sealed class Cursor : DataViewRowCursor
        {
            private readonly FeatureDataView _view;
            private readonly DataViewRowCursor _input;
            private readonly bool _wantsOutput;
            private readonly ValueGetter<VBuffer<float>>? _series;
            private VBuffer<float> _buffer;
            private float[]? _features;
            private long _featuresPosition = -1;

            public Cursor(FeatureDataView view, DataViewRowCursor input, bool wantsOutput)
            {
                _view = view;
                _input = input;
                _wantsOutput = wantsOutput;
                if (wantsOutput)
                    _series = input.GetGetter<VBuffer<float>>(view._input.Schema[view._owner.InputColumnName]);
            }

            public override DataViewSchema Schema => _view.Schema;

            public override long Position => _input.Position;

            public override long Batch => _input.Batch;

            public override bool MoveNext() => _input.MoveNext();

            public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

            public override bool IsColumnActive(DataViewSchema.Column column) =>
                column.Index == _view.Schema.Count - 1 ? _wantsOutput : _input.IsColumnActive(_view._input.Schema[column.Index]);

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                if (column.Index != _view.Schema.Count - 1)
                    return _input.GetGetter<TValue>(_view._input.Schema[column.Index]);
                if (!_wantsOutput)
                    throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was opened.");
                int size = _view._owner.FeatureCount;
                ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> value) =>
                {
                    if (_featuresPosition != Position)
                    {
                        _series!(ref _buffer);
                        var values = _buffer.DenseValues().ToArray();
                        CheckRow(values, _view._owner.Channels, _view._owner.InputColumnName, "the data", Position);
                        _features ??= new float[size];
                        _view._owner._kernels.Transform(values, _features);
                        _featuresPosition = Position;
                    }
                    var editor = VBufferEditor.Create(ref value, size);
                    _features!.AsSpan().CopyTo(editor.Values);
                    value = editor.Commit();
                };
                return getter as ValueGetter<TValue>
                    ?? throw new InvalidOperationException($"Column '{column.Name}' is a vector of Single; it was read as {typeof(TValue).Name}.");
            }

            protected override void Dispose(bool disposing)
            {
                if (disposing)
                    _input.Dispose();
                base.Dispose(disposing);
            }
        }
    }
}
