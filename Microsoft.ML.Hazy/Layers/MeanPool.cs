using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

/// <summary>Mean over one axis (the time axis of a sequence, say), dropping that axis.</summary>
internal sealed class MeanPool : nn.Module<Tensor, Tensor>, IOnnxExportable
{
    private readonly long _dim;

    public MeanPool(long dim) : base(nameof(MeanPool)) => _dim = dim;

    public override Tensor forward(Tensor input) => input.mean(new[] { _dim });

    public string ExportOnnx(OnnxGraphBuilder graph, string input) =>
        graph.Node("ReduceMean", new[] { input }, OnnxAttribute.Ints("axes", _dim), OnnxAttribute.Int("keepdims", 0));
}
