using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>The columns an attribution transformer reads and writes, and the output it explains.</summary>
internal sealed record AttributionColumns(string Feature, string Label, string PredictedLabel, string Output, AttributionTarget Target, int TargetClass)
{
    public static AttributionColumns From(GradientAttributionOptions o) =>
        new(o.FeatureColumnName, o.LabelColumnName, o.PredictedLabelColumnName, o.OutputColumnName, o.Target, o.TargetClass);
}

/// <summary>
/// Fits an attribution method: computes what it needs from the data given to <c>Fit</c> (the data-mean baseline,
/// DeepLiftShap's baseline rows) and returns an <see cref="AttributionTransformer"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// | Input column | Type | Needed for |
/// | -- | -- | -- |
/// | `Features` | known-size vector of Single | always |
/// | `Label` | key | target `TrueLabel` with a multi-output model |
/// | `PredictedLabel` | key | target `PredictedLabel` with a multi-output model (the scored data) |
///
/// | Output column | Type |
/// | -- | -- |
/// | `Attribution` | vector of Single, the size of `Features` |
/// ]]></format>
/// </remarks>
public sealed class AttributionEstimator : IEstimator<AttributionTransformer>
{
    private readonly HazyEnvironment _env;
    private readonly AttributionColumns _columns;
    private readonly Func<IDataView, int, int, (IAttributionMethod Method, int Outputs)> _create;

    internal AttributionEstimator(HazyEnvironment env, AttributionColumns columns, Func<IDataView, int, int, (IAttributionMethod Method, int Outputs)> create)
    {
        _env = env;
        _columns = columns;
        _create = create;
    }

    /// <summary>Builds the method for the data's feature size and returns the transformer.</summary>
    public AttributionTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int size = AttributionTransformer.FeatureSizeOf(input.Schema, _columns.Feature);
        int seed = _env.Env.Register("Hazy.Attribution").Rand.Next();
        var (method, outputs) = _create(input, size, seed);
        if (method.FeatureSize != size)
            throw new ArgumentException($"Column '{_columns.Feature}' has {size} values per row; the model reads {method.FeatureSize}.", nameof(input));
        if (_columns.Target == AttributionTarget.FixedClass && (_columns.TargetClass < 0 || _columns.TargetClass >= outputs))
            throw new ArgumentOutOfRangeException(nameof(input), _columns.TargetClass, $"The fixed target class {_columns.TargetClass} is outside the model's {outputs} output(s) [0, {outputs - 1}].");
        return new AttributionTransformer(method, outputs, _columns);
    }

    /// <summary>The input schema plus the attribution column.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var features = inputSchema.FirstOrDefault(c => c.Name == _columns.Feature);
        if (features.Name is null)
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Column '{_columns.Feature}' not found; expected a known-size vector of Single.");
        if (features.Kind != SchemaShape.Column.VectorKind.Vector || features.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Column '{_columns.Feature}' has type {features.Kind} of {features.ItemType}; expected a known-size vector of Single.");
        // The attribution column has the features' type; a built-in copy computes that shape.
        return new MLContext(0).Transforms.CopyColumns(_columns.Output, _columns.Feature).GetOutputSchema(inputSchema);
    }
}

/// <summary>
/// Adds an <c>Attribution</c> column (one value per feature, in the features' layout) to scored data: how much each
/// feature contributed to the explained output of each row. An analysis tool, not a model: it cannot be saved.
/// </summary>
/// <remarks>
/// The attributions of all rows are computed, in batches, when the first cursor over the output is opened, and kept
/// for later cursors. Rows are returned in the input's order (the output cannot shuffle).
/// </remarks>
public sealed class AttributionTransformer : ITransformer
{
    private readonly AttributionColumns _columns;

    internal AttributionTransformer(IAttributionMethod method, int outputs, AttributionColumns columns)
    {
        Method = method;
        OutputCount = outputs;
        _columns = columns;
    }

    /// <summary>The attribution method.</summary>
    public IAttributionMethod Method { get; }

    /// <summary>The model's outputs per row; with one output the target is always that output.</summary>
    public int OutputCount { get; }

    /// <summary>Which output is explained.</summary>
    public AttributionTarget Target => _columns.Target;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => false;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        CheckSchema(inputSchema);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(_columns.Output, new VectorDataViewType(NumberDataViewType.Single, Method.FeatureSize));
        return builder.ToSchema();
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) =>
        throw new NotSupportedException("Attribution works on batches of rows and has no row-to-row mapper; use Transform on an IDataView.");

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new AttributionDataView(input, GetOutputSchema(input.Schema), this);
    }

    /// <summary>Attribution is an analysis tool, not a model: it is not saved.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(
            "An AttributionTransformer is an analysis tool and cannot be saved. Save the model it explains, and build the attribution again after loading it.");

    /// <summary>The attributions of every row of <paramref name="input"/>, row-major (rows × feature size), with the rows' targets.</summary>
    public (float[] Attributions, int[] Targets, int Rows) Compute(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckSchema(input.Schema);
        var (features, targets, rows) = Read(input);
        return (Method.Attribute(features, rows, targets), targets, rows);
    }

    private (float[] Features, int[] Targets, int Rows) Read(IDataView input)
    {
        int size = Method.FeatureSize;
        var schema = input.Schema;
        var featureColumn = schema[_columns.Feature];
        string? targetName = TargetColumn();
        var needed = targetName is null ? new[] { featureColumn } : new[] { featureColumn, schema[targetName] };
        var features = new List<float>();
        var targets = new List<int>();
        using var cursor = input.GetRowCursor(needed);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(featureColumn);
        var getKey = targetName is null ? null : cursor.GetGetter<uint>(schema[targetName]);
        var buffer = default(VBuffer<float>);
        uint key = 0;
        while (cursor.MoveNext())
        {
            getFeatures(ref buffer);
            if (buffer.Length != size)
                throw new ArgumentException($"Column '{_columns.Feature}' has {buffer.Length} values in row {cursor.Position}; expected {size}.", nameof(input));
            int slot = 0;
            foreach (var v in buffer.DenseValues())
            {
                if (!float.IsFinite(v))
                    throw new ArgumentException($"Column '{_columns.Feature}' has the value {v} in row {cursor.Position}, slot {slot}; attribution needs finite features.", nameof(input));
                features.Add(v);
                slot++;
            }
            if (getKey is null)
            {
                targets.Add(OutputCount == 1 ? 0 : _columns.TargetClass);
                continue;
            }
            getKey(ref key);
            if (key == 0 || key > OutputCount)
                throw new ArgumentOutOfRangeException(nameof(input), key,
                    $"Column '{targetName}' has the key {key} in row {cursor.Position}; expected a class key in [1, {OutputCount}] (a missing value cannot be explained).");
            targets.Add((int)key - 1);
        }
        return (features.ToArray(), targets.ToArray(), targets.Count);
    }

    private string? TargetColumn() => OutputCount == 1 ? null : _columns.Target switch
    {
        AttributionTarget.TrueLabel => _columns.Label,
        AttributionTarget.PredictedLabel => _columns.PredictedLabel,
        _ => null,
    };

    private void CheckSchema(DataViewSchema schema)
    {
        SchemaChecks.FloatVectorColumn(schema, _columns.Feature, requireKnownSize: true, expectedSize: Method.FeatureSize);
        if (TargetColumn() is not { } name)
            return;
        var column = schema.GetColumnOrNull(name);
        string why = _columns.Target == AttributionTarget.PredictedLabel ? "score the data with the model first, or explain the true label" : "the true label is the target";
        if (column is null)
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{name}' not found; expected a key column ({why}).");
        if (column.Value.Type is not KeyDataViewType key || key.RawType != typeof(uint))
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{name}' has type {column.Value.Type}; expected a key (UInt32) column ({why}).");
    }

    internal static int FeatureSizeOf(DataViewSchema schema, string column)
    {
        SchemaChecks.FloatVectorColumn(schema, column, requireKnownSize: true);
        return ((VectorDataViewType)schema[column].Type).Size;
    }

    /// <summary>The input plus the attribution column, computed for all rows when the first cursor opens.</summary>
    private sealed class AttributionDataView : IDataView
    {
        private readonly IDataView _input;
        private readonly AttributionTransformer _owner;
        private readonly Lazy<float[]> _attributions;

        public AttributionDataView(IDataView input, DataViewSchema schema, AttributionTransformer owner)
        {
            _input = input;
            _owner = owner;
            Schema = schema;
            _attributions = new Lazy<float[]>(() => owner.Compute(input).Attributions, LazyThreadSafetyMode.ExecutionAndPublication);
        }

        public DataViewSchema Schema { get; }

        public bool CanShuffle => false;

        public long? GetRowCount() => _input.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
        {
            var needed = columnsNeeded.ToArray();
            int outputIndex = Schema.Count - 1;
            bool wantsOutput = needed.Any(c => c.Index == outputIndex);
            var inputColumns = needed.Where(c => c.Index != outputIndex).Select(c => _input.Schema[c.Index]);
            return new Cursor(this, _input.GetRowCursor(inputColumns), wantsOutput ? _attributions.Value : null);
        }

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };

        private sealed class Cursor : DataViewRowCursor
        {
            private readonly AttributionDataView _view;
            private readonly DataViewRowCursor _input;
            private readonly float[]? _values;

            public Cursor(AttributionDataView view, DataViewRowCursor input, float[]? values)
            {
                _view = view;
                _input = input;
                _values = values;
            }

            public override DataViewSchema Schema => _view.Schema;

            public override long Position => _input.Position;

            public override long Batch => _input.Batch;

            public override bool MoveNext() => _input.MoveNext();

            public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

            public override bool IsColumnActive(DataViewSchema.Column column) =>
                column.Index == _view.Schema.Count - 1 ? _values is not null : _input.IsColumnActive(_view._input.Schema[column.Index]);

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                if (column.Index != _view.Schema.Count - 1)
                    return _input.GetGetter<TValue>(_view._input.Schema[column.Index]);
                if (_values is null)
                    throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was opened.");
                int size = _view._owner.Method.FeatureSize;
                ValueGetter<VBuffer<float>> getter = (ref VBuffer<float> value) =>
                {
                    var editor = VBufferEditor.Create(ref value, size);
                    _values.AsSpan(checked((int)Position * size), size).CopyTo(editor.Values);
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
