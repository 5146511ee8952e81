using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>The prediction tasks Hazy trainers solve; it fixes the output columns.</summary>
public enum PredictionKind
{
    /// <summary>Outputs <c>Score</c> (Single).</summary>
    Regression,
    /// <summary>Outputs <c>Score</c> (the logit), <c>Probability</c> and <c>PredictedLabel</c> (Boolean).</summary>
    BinaryClassification,
    /// <summary>Outputs <c>Score</c> (class probabilities) and <c>PredictedLabel</c> (key with the label's values).</summary>
    MulticlassClassification,
}

/// <summary>The key values of a training label, kept so predicted keys map back to the original names.</summary>
internal sealed class LabelKeyValues
{
    private LabelKeyValues(int count, Type? valueType, Array? values)
    {
        Count = count;
        ValueType = valueType;
        Values = values;
    }

    /// <summary>Number of classes (the key's cardinality).</summary>
    public int Count { get; }

    /// <summary>.NET type of the values (string for text), null when the key has no values.</summary>
    public Type? ValueType { get; }

    /// <summary>The values in key order, or null.</summary>
    public Array? Values { get; }

    public static LabelKeyValues FromColumn(DataViewSchema.Column label)
    {
        var key = (KeyDataViewType)label.Type;
        if (key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(label), $"Column '{label.Name}' is a key of unknown or unbounded cardinality; expected a key with a known number of classes.");
        int count = (int)key.Count;
        var annotation = label.Annotations.Schema.GetColumnOrNull("KeyValues");
        if (annotation?.Type is not VectorDataViewType vector)
            return new LabelKeyValues(count, null, null);
        var raw = vector.ItemType.RawType;
        var method = typeof(LabelKeyValues).GetMethod(nameof(Read), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(raw);
        var values = (Array)method.Invoke(null, new object[] { label })!;
        if (raw == typeof(ReadOnlyMemory<char>))
            values = values.Cast<ReadOnlyMemory<char>>().Select(v => v.ToString()).ToArray();
        return new LabelKeyValues(count, values.GetType().GetElementType(), values);
    }

    /// <summary>Key values given in key order (a key of <paramref name="values"/>.Length classes).</summary>
    public static LabelKeyValues FromValues<T>(T[] values) => new(values.Length, typeof(T), values);

    /// <summary>Two stand-in values of <paramref name="valueType"/>, for computing an output schema before training.</summary>
    public static LabelKeyValues Placeholder(Type? valueType)
    {
        if (valueType is null)
            return new LabelKeyValues(2, null, null);
        var values = Array.CreateInstance(valueType, 2);
        values.SetValue(valueType == typeof(string) ? "0" : Convert.ChangeType(0, valueType, System.Globalization.CultureInfo.InvariantCulture), 0);
        values.SetValue(valueType == typeof(string) ? "1" : Convert.ChangeType(1, valueType, System.Globalization.CultureInfo.InvariantCulture), 1);
        return new LabelKeyValues(2, valueType, values);
    }

    /// <summary>Display names, for reports.</summary>
    public string[] Names() =>
        Values is null ? Enumerable.Range(1, Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray()
                       : Values.Cast<object>().Select(v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "").ToArray();

    private static T[] Read<T>(DataViewSchema.Column label)
    {
        var buffer = default(VBuffer<T>);
        label.Annotations.GetValue("KeyValues", ref buffer);
        return buffer.DenseValues().ToArray();
    }
}

/// <summary>
/// Turns a trained network into a standard ML.NET transformer chain: an <c>OnnxTransformer</c> holding the
/// exported graph, then built-in column transforms that give the output columns ML.NET's evaluators expect.
/// </summary>
internal static class OnnxScoringBridge
{
    /// <summary>
    /// The prediction graph (<paramref name="classes"/> is the width of a multiclass score; ignored otherwise). The per-row graph (what ML.NET's <c>OnnxTransformer</c> runs) takes one row of
    /// <paramref name="rowShape"/>; the batched graph, for ONNX Runtime and serving engines, takes a leading
    /// batch dimension and names its outputs Score, Probability and PredictedLabel.
    /// </summary>
    /// <remarks>
    /// With a <paramref name="sequence"/> layout the network must be an <see cref="ISequenceNetwork"/> and the
    /// input is the flat time-major column: [L·C] per row (batched: [batch, L·C]). A variable-length per-row
    /// graph reads the padded values and their count (<see cref="SequencePadding"/>); the batched one reads
    /// [batch, T·C] zero-padded rows and <see cref="SequenceStepsInput"/>, the int64 time steps of each row.
    /// </remarks>
    public static byte[] BuildGraph(nn.Module network, string inputName, long[] rowShape, PredictionKind kind, int classes, bool batched,
        SequenceLayout? sequence = null)
    {
        var g = new OnnxGraphBuilder("hazy_" + kind.ToString().ToLowerInvariant());
        string x, y;
        if (sequence is not null)
        {
            x = SequenceRows(g, inputName, sequence, batched, out var mask);
            y = ((ISequenceNetwork)network).ExportOnnx(g, x, sequence.ExportSteps, mask);
        }
        else
        {
            if (batched)
                x = g.AddInput(inputName, OnnxElementType.Float, new long?[] { null }.Concat(rowShape.Select(d => (long?)d)).ToArray());
            else
                x = g.Node("Unsqueeze", new[] { g.AddInput(inputName, OnnxElementType.Float, rowShape.Select(d => (long?)d).ToArray()), g.Int64s(0) });
            y = OnnxModuleExporter.Export(g, network, x);
        }
        string Row(string v) => batched ? v : g.Node("Squeeze", new[] { v, g.Int64s(0) });
        long?[] Dims(long? width) => batched ? new long?[] { null, width } : new long?[] { width };

        switch (kind)
        {
            case PredictionKind.Regression:
                g.AddOutput(Row(y), batched ? DefaultColumnNames.Score : ScalarColumns.ScoreVector, OnnxElementType.Float, Dims(1));
                break;
            case PredictionKind.BinaryClassification:
                g.AddOutput(Row(y), batched ? DefaultColumnNames.Score : ScalarColumns.ScoreVector, OnnxElementType.Float, Dims(1));
                g.AddOutput(Row(g.Node("Sigmoid", new[] { y })), batched ? DefaultColumnNames.Probability : ScalarColumns.ProbabilityVector, OnnxElementType.Float, Dims(1));
                g.AddOutput(Row(g.Node("Greater", new[] { y, g.Scalar(0f) })), batched ? DefaultColumnNames.PredictedLabel : ScalarColumns.PredictedVector, OnnxElementType.Bool, Dims(1));
                break;
            default:
                g.AddOutput(Row(g.Node("Softmax", new[] { y }, OnnxAttribute.Int("axis", 1))), DefaultColumnNames.Score, OnnxElementType.Float, Dims(classes));
                g.AddOutput(Row(g.Node("ArgMax", new[] { y }, OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("keepdims", 1))),
                    batched ? DefaultColumnNames.PredictedLabel : ScalarColumns.PredictedVector, OnnxElementType.Int64, Dims(1));
                break;
        }
        return g.ToBytes($"Exported by Microsoft.ML.Hazy: {kind}, input '{inputName}' of shape [{string.Join(", ", rowShape)}].");
    }

    /// <summary>The batched graph's input holding each row's number of time steps, for variable-length sequence models.</summary>
    public const string SequenceStepsInput = "Steps";

    /// <summary>Declares the sequence inputs and returns [B, L, C] rows; <paramref name="mask"/> is set when rows may be padded.</summary>
    private static string SequenceRows(OnnxGraphBuilder g, string inputName, SequenceLayout layout, bool batched, out string? mask)
    {
        long c = layout.Channels;
        mask = null;
        if (!layout.IsVariableLength)
        {
            long values = layout.Length * c;
            var flat = batched ? g.AddInput(inputName, OnnxElementType.Float, null, values) : g.AddInput(inputName, OnnxElementType.Float, values);
            return g.Node("Reshape", new[] { flat, g.Int64s(-1, layout.Length, c) });
        }
        if (!batched)
        {
            var padded = g.AddInput(SequencePadding.PaddedColumn, OnnxElementType.Float, layout.PaddedValues);
            // An empty row scores as one all-zero step (the padding's first step), not as a 0/0 pooled mean.
            var count = g.Node("Max", new[] { g.AddInput(SequencePadding.CountColumn, OnnxElementType.Int64, 1), g.Int64s(c) });
            var own = g.Node("Slice", new[] { padded, g.Int64s(0), count, g.Int64s(0) });
            return g.Node("Reshape", new[] { own, g.Int64s(1, -1, c) });
        }
        var rows = g.Node("Reshape", new[] { g.AddInput(inputName, OnnxElementType.Float, null, null), g.Int64s(0, -1, c) });
        var steps = g.Node("Max", new[] { g.AddInput(SequenceStepsInput, OnnxElementType.Int64, (long?)null), g.Int64s(1) });
        var length = g.Node("Gather", new[] { g.Node("Shape", new[] { rows }), g.AddInitializer("time_axis", new long[] { 1 }) }, OnnxAttribute.Int("axis", 0));
        var positions = g.Node("Range", new[] { g.AddInitializer("zero", new long[] { 0 }), length, g.AddInitializer("one", new long[] { 1 }) });
        var valid = g.Node("Less", new[] { positions, g.Node("Unsqueeze", new[] { steps, g.Int64s(1) }) });
        mask = g.Node("Unsqueeze", new[] { g.Node("Cast", new[] { valid }, OnnxAttribute.Int("to", (long)OnnxElementType.Float)), g.Int64s(2) });
        return rows;
    }

    /// <summary>The built-in ML.NET estimators that serve the per-row graph.</summary>
    /// <remarks>
    /// With <paramref name="threads"/> the ONNX Runtime session uses that many intra- and inter-op threads. ML.NET takes
    /// thread counts only through <c>OnnxOptions</c>, which reads the graph from a file: it is written to the context's
    /// temporary folder, as ML.NET itself does with a graph given as a stream (and, like that one, is left there, since
    /// <c>OnnxTransformer</c> reads the file again when the model is saved).
    /// </remarks>
    public static IEstimator<ITransformer> CreateScoringEstimator(byte[] rowGraph, string inputName, PredictionKind kind,
        LabelKeyValues? labelKeys, int? gpuDeviceId, bool fallbackToCpu, SequenceLayout? sequence = null, int? threads = null)
    {
        var ml = new MLContext();
        string[] outputs = kind switch
        {
            PredictionKind.Regression => new[] { ScalarColumns.ScoreVector },
            PredictionKind.BinaryClassification => new[] { ScalarColumns.ScoreVector, ScalarColumns.ProbabilityVector, ScalarColumns.PredictedVector },
            _ => new[] { DefaultColumnNames.Score, ScalarColumns.PredictedVector },
        };
        bool padded = sequence is { IsVariableLength: true };
        string[] inputs = padded ? new[] { SequencePadding.PaddedColumn, SequencePadding.CountColumn } : new[] { inputName };
        IEstimator<ITransformer> onnx = threads is int n
            ? ml.Transforms.ApplyOnnxModel(new Microsoft.ML.Transforms.Onnx.OnnxOptions
            {
                ModelFile = WriteTemporaryGraph(ml, rowGraph),
                InputColumns = inputs,
                OutputColumns = outputs,
                GpuDeviceId = gpuDeviceId,
                FallbackToCpu = fallbackToCpu,
                IntraOpNumThreads = n,
                InterOpNumThreads = n,
            })
            : ml.Transforms.ApplyOnnxModel(outputs, inputs, new MemoryStream(rowGraph), gpuDeviceId, fallbackToCpu);
        if (padded)
        {
            onnx = ml.Transforms.CopyColumns(SequencePadding.InputColumn, inputName)
                .Append(SequencePadding.Create(ml, sequence!.PaddedValues))
                .Append(onnx)
                .Append(ml.Transforms.DropColumns(SequencePadding.InputColumn, SequencePadding.PaddedColumn, SequencePadding.CountColumn));
        }
        switch (kind)
        {
            case PredictionKind.Regression:
                return onnx.Append(ml.Transforms.CustomMapping<RegressionOnnxOutput, RegressionScalars>(ScalarColumns.Regression, ScalarColumns.RegressionContract))
                    .Append(ml.Transforms.DropColumns(ScalarColumns.ScoreVector));
            case PredictionKind.BinaryClassification:
                return onnx.Append(ml.Transforms.CustomMapping<BinaryOnnxOutput, BinaryScalars>(ScalarColumns.Binary, ScalarColumns.BinaryContract))
                    .Append(ml.Transforms.DropColumns(ScalarColumns.ScoreVector, ScalarColumns.ProbabilityVector, ScalarColumns.PredictedVector));
            default:
                if (labelKeys is null)
                    throw new ArgumentNullException(nameof(labelKeys));
                return onnx.Append(ml.Transforms.CustomMapping<ClassIndexOnnxOutput, ClassIndexScalar>(ScalarColumns.ClassIndex, ScalarColumns.ClassIndexContract))
                    .Append(IndexToKey(ml, labelKeys))
                    .Append(ml.Transforms.DropColumns(ScalarColumns.PredictedVector, ScalarColumns.PredictedIndex));
        }
    }

    private static string WriteTemporaryGraph(MLContext ml, byte[] graph)
    {
        var path = Path.Combine(ml.TempFilePath, "hazy-" + Path.GetRandomFileName() + ".onnx");
        File.WriteAllBytes(path, graph);
        return path;
    }

    /// <summary>
    /// Maps the class index in <see cref="ScalarColumns.PredictedIndex"/> (i) to the key of <paramref name="outputColumn"/>
    /// whose value is the i-th key value.
    /// </summary>
    internal static IEstimator<ITransformer> IndexToKey(MLContext ml, LabelKeyValues keys, string outputColumn = DefaultColumnNames.PredictedLabel)
    {
        Array values = keys.Values ?? Enumerable.Range(1, keys.Count).Select(i => (uint)i).ToArray();
        var valueType = values.GetType().GetElementType()!;
        var method = typeof(OnnxScoringBridge).GetMethod(nameof(MapIndex), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(valueType);
        return (IEstimator<ITransformer>)method.Invoke(null, new object[] { ml, values, outputColumn })!;
    }

    private static IEstimator<ITransformer> MapIndex<TValue>(MLContext ml, Array values, string outputColumn)
    {
        var pairs = values.Cast<TValue>().Select((v, i) => new KeyValuePair<long, TValue>(i, v)).ToArray();
        return ml.Transforms.Conversion.MapValue(outputColumn, pairs, ScalarColumns.PredictedIndex, treatValuesAsKeyType: true);
    }
}
