using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Heads;

/// <summary>
/// An embedding: the network's [B, D] output is the model's column <see cref="ColumnName"/> (a vector of D Single,
/// default <c>Embedding</c>), optionally L2-normalised, v / max(‖v‖₂, 1e-12) as <c>torch.nn.functional.normalize</c>,
/// in TorchSharp and in the ONNX graph alike. It reads no label and has no loss of its own: an embedding trainer trains
/// with its own objective and exports through this head.
/// </summary>
internal sealed class EmbeddingHead : OutputHead
{
    /// <summary>The smallest norm divided by, as in <c>torch.nn.functional.normalize</c>.</summary>
    public const float NormEpsilon = 1e-12f;

    public EmbeddingHead(int size, bool normalize, string columnName = DefaultColumnNames.Embedding)
    {
        if (size <= 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "The embedding size must be positive.");
        ArgumentException.ThrowIfNullOrWhiteSpace(columnName);
        Size = size;
        Normalize = normalize;
        ColumnName = columnName;
    }

    /// <summary>D, the values per embedding.</summary>
    public int Size { get; }

    /// <summary>Whether embeddings are scaled to unit L2 norm.</summary>
    public bool Normalize { get; }

    /// <summary>The output column.</summary>
    public string ColumnName { get; }

    public override PredictionKind Kind => PredictionKind.Embedding;

    public override int Outputs => Size;

    public override LabelKind? Label => null;

    public override string ExpectedLabel => "no label";

    public override bool AcceptsLabel(SchemaShape.Column label) => true;

    public override string MetricName => "none";

    public override bool HigherIsBetter => false;

    protected override Tensor RowLoss(Tensor output, Tensor labels) =>
        throw new NotSupportedException("An embedding head has no loss of its own; train with an objective (see EmbeddingTrainer).");

    public override double MetricSum(Tensor output, TensorBatch batch) =>
        throw new NotSupportedException("An embedding head has no validation metric of its own; validate with the training task's head.");

    public override Tensor Score(Tensor output) =>
        Normalize ? nn.functional.normalize(output, p: 2, dim: 1, eps: NormEpsilon) : output.alias();

    public override string GraphName => "embedding";

    public override void AddOutputs(OnnxGraphBuilder g, string y, bool batched)
    {
        string v = y;
        if (Normalize)
        {
            var norm = g.Node("ReduceL2", new[] { y }, OnnxAttribute.Ints("axes", 1), OnnxAttribute.Int("keepdims", 1));
            v = g.Node("Div", new[] { y, g.Node("Max", new[] { norm, g.Scalar(NormEpsilon) }) });
        }
        g.AddOutput(Row(g, v, batched), ColumnName, OnnxElementType.Float, Dims(Size, batched));
    }

    public override string[] RowOutputs => new[] { ColumnName };

    // The OnnxTransformer's output is already the Vector<Single, D> column: nothing to unwrap, so a saved model needs no CustomMapping.
    public override IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx) => onnx;
}
