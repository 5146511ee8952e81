using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Cnn;

/// <summary>
/// Unflatten [B, C·H·W] → [B, C, H, W], then per block Conv2d → BatchNorm2d → ReLU → Dropout2d, then Flatten and a
/// linear head. <see cref="Layers"/> lists exactly these TorchSharp modules, in forward order.
/// </summary>
internal sealed partial class CnnNetwork : nn.Module<Tensor, Tensor>, IOnnxExportable, ILayeredNetwork
{
    private readonly Sequential layers;

    public CnnNetwork(int channels, int height, int width, IReadOnlyList<int> filters, int kernelSize, int stride, int padding, double dropout, int outputSize)
        : base(nameof(CnnNetwork))
    {
        TorchRuntime.EnsureInitialized();
        Channels = channels;
        Height = height;
        Width = width;
        Filters = filters.ToArray();
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        Dropout = dropout;
        OutputSize = outputSize;
        var (h, w) = OutputSide(height, width, filters.Count, kernelSize, stride, padding);
        var modules = new List<(string, nn.Module<Tensor, Tensor>)> { ("unflatten", nn.Unflatten(1, new long[] { channels, height, width })) };
        int inChannels = channels;
        for (int i = 0; i < filters.Count; i++)
        {
            modules.Add(($"conv{i}", nn.Conv2d(inChannels, filters[i], kernelSize, stride, padding)));
            modules.Add(($"norm{i}", nn.BatchNorm2d(filters[i])));
            modules.Add(($"act{i}", nn.ReLU()));
            if (dropout > 0)
                modules.Add(($"dropout{i}", new SeededDropout(dropout, channels: true)));
            inChannels = filters[i];
        }
        modules.Add(("flatten", nn.Flatten(1)));
        modules.Add(("head", nn.Linear((long)inChannels * h * w, outputSize)));
        layers = nn.Sequential(modules);
        RegisterComponents();
    }

    public int Channels { get; }

    public int Height { get; }

    public int Width { get; }

    public int[] Filters { get; }

    public int KernelSize { get; }

    public int Stride { get; }

    public int Padding { get; }

    public double Dropout { get; }

    public int OutputSize { get; }

    /// <summary>The feature count of a flat input row, C·H·W.</summary>
    public int InputSize => Channels * Height * Width;

    public override Tensor forward(Tensor input) => BatchNormForward.Sequential(Layers, input);

    public IReadOnlyList<nn.Module<Tensor, Tensor>> Layers => layers.children().Cast<nn.Module<Tensor, Tensor>>().ToArray();

    public string ExportOnnx(OnnxGraphBuilder graph, string input) => OnnxModuleExporter.Export(graph, layers, input);

    /// <summary>The feature map's side after <paramref name="blocks"/> convolutions: ⌊(n + 2p − k) / s⌋ + 1 each; ≤ 0 when too small.</summary>
    public static (int Height, int Width) OutputSide(int height, int width, int blocks, int kernelSize, int stride, int padding)
    {
        static int Next(int n, int k, int s, int p) => n + 2 * p < k ? 0 : (n + 2 * p - k) / s + 1;
        for (int i = 0; i < blocks && height > 0 && width > 0; i++)
        {
            height = Next(height, kernelSize, stride, padding);
            width = Next(width, kernelSize, stride, padding);
        }
        return (height, width);
    }
}
