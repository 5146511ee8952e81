using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>A Hazy module that writes its own ONNX nodes.</summary>
internal interface IOnnxExportable
{
    /// <summary>Adds the module's computation on <paramref name="input"/> and returns the output's name.</summary>
    string ExportOnnx(OnnxGraphBuilder graph, string input);
}

/// <summary>
/// Writes TorchSharp modules as ONNX nodes. Exporters see tensors with the batch as the leading dimension,
/// exactly as the module's forward does, so axes carry over unchanged.
/// </summary>
internal static class OnnxModuleExporter
{
    public static string Export(OnnxGraphBuilder g, nn.Module module, string input)
    {
        switch (module)
        {
            case IOnnxExportable own:
                return own.ExportOnnx(g, input);
            case Sequential sequential:
                foreach (var (_, child) in sequential.named_children())
                    input = Export(g, child, input);
                return input;
            case Linear linear:
                return Linear(g, input, linear.weight, linear.bias);
            case ReLU:
                return g.Node("Relu", new[] { input });
            case GELU gelu:
                return Gelu(g, input, gelu.approximate.ToString() == "tanh");
            case Tanh:
                return g.Node("Tanh", new[] { input });
            case Sigmoid:
                return g.Node("Sigmoid", new[] { input });
            case SiLU:
                return g.Node("Mul", new[] { input, g.Node("Sigmoid", new[] { input }) });
            case Dropout:
            case Identity:
                return input;
            case Softmax softmax:
                return g.Node("Softmax", new[] { input }, OnnxAttribute.Int("axis", softmax.dim));
            case LayerNorm norm:
                return LayerNormalization(g, input, norm.weight, norm.bias, norm.normalized_shape.Length, norm.eps);
            default:
                throw new NotSupportedException(
                    $"No ONNX exporter for the module type {module.GetType().FullName}. Hazy exports Sequential, Linear, ReLU, GELU, Tanh, Sigmoid, SiLU, Dropout, Identity, Softmax, LayerNorm and modules that implement their own export.");
        }
    }

    /// <summary>y = x Wᵀ + b.</summary>
    public static string Linear(OnnxGraphBuilder g, string input, Tensor weight, Tensor? bias)
    {
        using var wt = weight.detach().t();
        var y = g.Node("MatMul", new[] { input, g.AddInitializer("weight_t", wt) });
        return bias is null ? y : g.Node("Add", new[] { y, g.AddInitializer("bias", bias) });
    }

    /// <summary>GELU(x) = x Φ(x), exactly through erf, or with the tanh approximation.</summary>
    public static string Gelu(OnnxGraphBuilder g, string x, bool tanhApproximation)
    {
        string inner;
        if (tanhApproximation)
        {
            var x3 = g.Node("Mul", new[] { g.Node("Mul", new[] { x, x }), x });
            var poly = g.Node("Add", new[] { x, g.Node("Mul", new[] { x3, g.Scalar(0.044715f) }) });
            inner = g.Node("Tanh", new[] { g.Node("Mul", new[] { poly, g.Scalar((float)Math.Sqrt(2 / Math.PI)) }) });
        }
        else
        {
            inner = g.Node("Erf", new[] { g.Node("Mul", new[] { x, g.Scalar((float)(1 / Math.Sqrt(2))) }) });
        }
        var half = g.Node("Mul", new[] { x, g.Scalar(0.5f) });
        return g.Node("Mul", new[] { half, g.Node("Add", new[] { inner, g.Scalar(1f) }) });
    }

    /// <summary>Normalises over the last <paramref name="dims"/> axes.</summary>
    public static string LayerNormalization(OnnxGraphBuilder g, string input, Tensor? weight, Tensor? bias, int dims, double eps)
    {
        if (weight is null)
            throw new NotSupportedException("ONNX export of LayerNorm needs elementwise_affine = true.");
        var inputs = new List<string> { input, g.AddInitializer("ln_scale", weight) };
        if (bias is not null)
            inputs.Add(g.AddInitializer("ln_bias", bias));
        return g.Node("LayerNormalization", inputs, OnnxAttribute.Int("axis", -dims), OnnxAttribute.Float("epsilon", (float)eps));
    }
}
