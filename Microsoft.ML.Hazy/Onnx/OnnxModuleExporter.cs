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
            case Dropout2d:
            case Identity:
                return input;
            case Conv2d conv:
                return Conv2d(g, input, conv);
            case BatchNorm2d norm:
                return BatchNormalization(g, input, norm);
            case Flatten flatten:
                return Flatten(g, input, flatten.start_dim, flatten.end_dim);
            case Unflatten unflatten:
                return Unflatten(g, input, unflatten.dim, unflatten.unflattened_size);
            case Softmax softmax:
                return g.Node("Softmax", new[] { input }, OnnxAttribute.Int("axis", softmax.dim));
            case LayerNorm norm:
                return LayerNormalization(g, input, norm.weight, norm.bias, norm.normalized_shape.Length, norm.eps);
            default:
                throw new NotSupportedException(
                    $"No ONNX exporter for the module type {module.GetType().FullName}. Hazy exports Sequential, Linear, Conv2d, BatchNorm2d, Flatten, Unflatten, ReLU, GELU, Tanh, Sigmoid, SiLU, Dropout, Dropout2d, Identity, Softmax, LayerNorm and modules that implement their own export.");
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

    /// <summary>ONNX Conv of a zero-padded Conv2d; pads are [top, left, bottom, right].</summary>
    public static string Conv2d(OnnxGraphBuilder g, string input, Conv2d conv)
    {
        if (conv.padding_mode != PaddingModes.Zeros)
            throw new NotSupportedException($"ONNX export of Conv2d supports padding_mode Zeros only, not {conv.padding_mode}.");
        long[] k = conv.kernel_size, d = conv.dilation;
        long[] pads = conv.padding_type switch
        {
            TorchSharp.Padding.Valid => new long[4],
            // PyTorch's 'same': total d·(k − 1) per axis, the smaller half before.
            TorchSharp.Padding.Same => new[] { d[0] * (k[0] - 1) / 2, d[1] * (k[1] - 1) / 2, d[0] * (k[0] - 1) - d[0] * (k[0] - 1) / 2, d[1] * (k[1] - 1) - d[1] * (k[1] - 1) / 2 },
            _ => conv.padding is { } p ? new[] { p[0], p[1], p[0], p[1] } : new long[4],
        };
        var inputs = new List<string> { input, g.AddInitializer("conv_weight", conv.weight!) };
        if (conv.bias is { } bias)
            inputs.Add(g.AddInitializer("conv_bias", bias));
        return g.Node("Conv", inputs, OnnxAttribute.Ints("kernel_shape", k), OnnxAttribute.Ints("strides", conv.stride),
            OnnxAttribute.Ints("pads", pads), OnnxAttribute.Ints("dilations", d), OnnxAttribute.Int("group", conv.groups));
    }

    /// <summary>BatchNorm2d in eval mode: (x − running mean) / √(running var + ε) · γ + β over axis 1.</summary>
    public static string BatchNormalization(OnnxGraphBuilder g, string input, BatchNorm2d norm)
    {
        if (norm.running_mean is null || norm.running_var is null)
            throw new NotSupportedException("ONNX export of BatchNorm2d needs track_running_stats = true (scoring uses the running statistics).");
        long n = norm.num_features;
        string scale = norm.weight is { } w ? g.AddInitializer("bn_scale", w) : g.AddInitializer("bn_scale", Enumerable.Repeat(1f, (int)n).ToArray(), n);
        string shift = norm.bias is { } b ? g.AddInitializer("bn_bias", b) : g.AddInitializer("bn_bias", new float[n], n);
        return g.Node("BatchNormalization", new[] { input, scale, shift, g.AddInitializer("bn_mean", norm.running_mean), g.AddInitializer("bn_var", norm.running_var) },
            OnnxAttribute.Float("epsilon", (float)norm.eps));
    }

    /// <summary>Flattens the axes from <paramref name="startDim"/> to the last into one.</summary>
    public static string Flatten(OnnxGraphBuilder g, string input, long startDim, long endDim)
    {
        if (startDim < 0 || endDim != -1)
            throw new NotSupportedException($"ONNX export of Flatten supports a non-negative start_dim and end_dim = -1, not ({startDim}, {endDim}).");
        if (startDim == 1)
            return g.Node("Flatten", new[] { input }, OnnxAttribute.Int("axis", 1));
        // Reshape's 0 copies the input's dimension.
        return g.Node("Reshape", new[] { input, g.Int64s(new long[startDim].Append(-1).ToArray()) });
    }

    /// <summary>Splits axis <paramref name="dim"/> into <paramref name="sizes"/>, keeping the other axes.</summary>
    public static string Unflatten(OnnxGraphBuilder g, string input, long dim, long[] sizes)
    {
        if (dim < 0)
            throw new NotSupportedException($"ONNX export of Unflatten supports a non-negative dim, not {dim}.");
        var shape = g.Node("Shape", new[] { input });
        var before = g.Node("Slice", new[] { shape, g.Int64s(0), g.Int64s(dim) });
        var after = g.Node("Slice", new[] { shape, g.Int64s(dim + 1), g.Int64s(long.MaxValue) });
        var target = g.Node("Concat", new[] { before, g.Int64s(sizes), after }, OnnxAttribute.Int("axis", 0));
        return g.Node("Reshape", new[] { input, target });
    }
}
