using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>
/// What a task adds to the exported graph and to the ML.NET chain after the <c>OnnxTransformer</c>: the output heads
/// implement it, so the bridge knows no task.
/// </summary>
internal interface IScoringOutputs
{
    /// <summary>A short lower-case name for the graph ("multiclass", "embedding").</summary>
    string GraphName { get; }

    /// <summary>Adds the graph outputs computed from the network's output <paramref name="y"/> ([1, W] per row, [B, W] batched).</summary>
    /// <remarks>Per row, the outputs are the names in <see cref="RowOutputs"/>; batched, they are named after the model's columns.</remarks>
    void AddOutputs(OnnxGraphBuilder g, string y, bool batched);

    /// <summary>The per-row graph's outputs that the <c>OnnxTransformer</c> turns into columns.</summary>
    string[] RowOutputs { get; }

    /// <summary>Appends the built-in transforms that turn the <see cref="RowOutputs"/> columns into the model's columns.</summary>
    IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx);
}

/// <summary>
/// Turns a trained network into a standard ML.NET transformer chain: an <c>OnnxTransformer</c> holding the
/// exported graph, then built-in column transforms that give the output columns ML.NET's evaluators expect.
/// </summary>
internal static class OnnxScoringBridge
{
    /// <summary>
    /// The prediction graph: the network, then the outputs of <paramref name="outputs"/> (the task's head). The per-row graph
    /// (what ML.NET's <c>OnnxTransformer</c> runs) takes one row of <paramref name="rowShape"/>; the batched graph, for ONNX
    /// Runtime and serving engines, takes a leading batch dimension and names its outputs after the model's columns.
    /// </summary>
    /// <remarks>
    /// With a <paramref name="sequence"/> layout the network must be an <see cref="ISequenceNetwork"/> and the
    /// input is the flat time-major column: [L·C] per row (batched: [batch, L·C]). A variable-length per-row
    /// graph reads the padded values and their count (<see cref="SequencePadding"/>); the batched one reads
    /// [batch, T·C] zero-padded rows and <see cref="SequenceStepsInput"/>, the int64 time steps of each row.
    /// </remarks>
    public static byte[] BuildGraph(nn.Module network, string inputName, long[] rowShape, IScoringOutputs outputs, bool batched,
        SequenceLayout? sequence = null)
    {
        var g = new OnnxGraphBuilder("hazy_" + outputs.GraphName);
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
        outputs.AddOutputs(g, y, batched);
        return g.ToBytes($"Exported by Microsoft.ML.Hazy: {outputs.GraphName}, input '{inputName}' of shape [{string.Join(", ", rowShape)}].");
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
    public static IEstimator<ITransformer> CreateScoringEstimator(byte[] rowGraph, string inputName, IScoringOutputs outputs,
        int? gpuDeviceId, bool fallbackToCpu, SequenceLayout? sequence = null, int? threads = null)
    {
        var ml = new MLContext();
        bool padded = sequence is { IsVariableLength: true };
        string[] inputs = padded ? new[] { SequencePadding.PaddedColumn, SequencePadding.CountColumn } : new[] { inputName };
        IEstimator<ITransformer> onnx = threads is int n
            ? ml.Transforms.ApplyOnnxModel(new Microsoft.ML.Transforms.Onnx.OnnxOptions
            {
                ModelFile = WriteTemporaryGraph(ml, rowGraph),
                InputColumns = inputs,
                OutputColumns = outputs.RowOutputs,
                GpuDeviceId = gpuDeviceId,
                FallbackToCpu = fallbackToCpu,
                IntraOpNumThreads = n,
                InterOpNumThreads = n,
            })
            : ml.Transforms.ApplyOnnxModel(outputs.RowOutputs, inputs, new MemoryStream(rowGraph), gpuDeviceId, fallbackToCpu);
        if (padded)
        {
            onnx = ml.Transforms.CopyColumns(SequencePadding.InputColumn, inputName)
                .Append(SequencePadding.Create(ml, sequence!.PaddedValues))
                .Append(onnx)
                .Append(ml.Transforms.DropColumns(SequencePadding.InputColumn, SequencePadding.PaddedColumn, SequencePadding.CountColumn));
        }
        return outputs.AppendColumns(ml, onnx);
    }

    private static string WriteTemporaryGraph(MLContext ml, byte[] graph)
    {
        var path = Path.Combine(ml.TempFilePath, "hazy-" + Path.GetRandomFileName() + ".onnx");
        File.WriteAllBytes(path, graph);
        return path;
    }

    /// <summary>
    /// Turns the per-row graph's predicted class index (the one-element int64 <see cref="ScalarColumns.PredictedVector"/>) into
    /// <paramref name="outputColumn"/>, a key with <paramref name="keys"/>' values, and drops the temporary columns.
    /// </summary>
    internal static IEstimator<ITransformer> PredictedKey(MLContext ml, LabelKeyValues keys, string outputColumn = DefaultColumnNames.PredictedLabel) =>
        ml.Transforms.CustomMapping<ClassIndexOnnxOutput, ClassIndexScalar>(ScalarColumns.ClassIndex, ScalarColumns.ClassIndexContract)
            .Append(IndexToKey(ml, keys, outputColumn))
            .Append(ml.Transforms.DropColumns(ScalarColumns.PredictedVector, ScalarColumns.PredictedIndex));

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
