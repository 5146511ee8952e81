using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Mlp;

/// <summary>Activation functions of the MLP's hidden layers.</summary>
public enum MlpActivation
{
    /// <summary>max(0, x).</summary>
    Relu,
    /// <summary>x Φ(x), exact.</summary>
    Gelu,
    /// <summary>tanh(x).</summary>
    Tanh,
}

/// <summary>
/// Linear → activation → dropout per hidden layer (optionally with LayerNorm), then a linear head. With
/// <c>monarchBlocks</c> &gt; 0 the hidden layers' linear maps are <see cref="MonarchLinear"/>; the head stays dense.
/// </summary>
internal sealed partial class MlpNetwork : nn.Module<Tensor, Tensor>, IOnnxExportable, ILayeredNetwork
{
    private readonly Sequential layers;

    public MlpNetwork(int inputSize, IReadOnlyList<int> hidden, int outputSize, MlpActivation activation, double dropout, bool layerNorm, int monarchBlocks = 0)
        : base(nameof(MlpNetwork))
    {
        InputSize = inputSize;
        Hidden = hidden.ToArray();
        OutputSize = outputSize;
        Activation = activation;
        Dropout = dropout;
        LayerNorm = layerNorm;
        MonarchBlocks = monarchBlocks;
        var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
        int width = inputSize;
        for (int i = 0; i < hidden.Count; i++)
        {
            modules.Add(($"linear{i}", MonarchLinear.OrDense(width, hidden[i], monarchBlocks)));
            if (layerNorm)
                modules.Add(($"norm{i}", nn.LayerNorm(hidden[i])));
            modules.Add(($"act{i}", activation switch
            {
                MlpActivation.Gelu => nn.GELU(),
                MlpActivation.Tanh => nn.Tanh(),
                _ => (nn.Module<Tensor, Tensor>)nn.ReLU(),
            }));
            if (dropout > 0)
                modules.Add(($"dropout{i}", new SeededDropout(dropout)));
            width = hidden[i];
        }
        modules.Add(("head", nn.Linear(width, outputSize)));
        layers = nn.Sequential(modules);
        RegisterComponents();
    }

    public int InputSize { get; }

    public int[] Hidden { get; }

    public int OutputSize { get; }

    public MlpActivation Activation { get; }

    public double Dropout { get; }

    public bool LayerNorm { get; }

    /// <summary>Blocks of the hidden layers' Monarch factors; 0 when they are dense.</summary>
    public int MonarchBlocks { get; }

    public override Tensor forward(Tensor input) => layers.forward(input);

    public IReadOnlyList<nn.Module<Tensor, Tensor>> Layers => layers.children().Cast<nn.Module<Tensor, Tensor>>().ToArray();

    public string ExportOnnx(OnnxGraphBuilder graph, string input) => OnnxModuleExporter.Export(graph, layers, input);

    /// <summary>A new dense network computing exactly this network's function (each MonarchLinear replaced by its ToDense()).</summary>
    public MlpNetwork Densify() => Convert(0);

    /// <summary>A new network whose hidden layers are the Monarch projections (§3.5) of this network's dense hidden layers.</summary>
    public MlpNetwork ToMonarch(int nblocks)
    {
        if (nblocks <= 0)
            throw new ArgumentOutOfRangeException(nameof(nblocks), nblocks, "nblocks must be positive.");
        return Convert(nblocks);
    }

    private MlpNetwork Convert(int nblocks)
    {
        var result = new MlpNetwork(InputSize, Hidden, OutputSize, Activation, Dropout, LayerNorm, nblocks);
        var device = parameters().First().device;
        result.to(device);
        using var _ = no_grad();
        var targets = result.layers.named_children().ToDictionary(c => c.name, c => c.module);
        foreach (var (name, source) in layers.named_children())
        {
            var target = targets[name];
            switch (source, target)
            {
                case (MonarchLinear m, Linear d):
                    using (var w = m.ToDense())
                        d.weight!.copy_(w);
                    d.bias!.copy_(m.Bias!);
                    break;
                case (Linear d, MonarchLinear m):
                    using (var projected = MonarchLinear.FromDense(d.weight!, d.bias, m.Blocks))
                        CopyParameters(projected, m);
                    break;
                default:
                    CopyParameters(source, target);
                    break;
            }
        }
        result.train(training);
        return result;
    }

    private static void CopyParameters(nn.Module source, nn.Module target)
    {
        var wanted = target.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in source.named_parameters())
            wanted[name].copy_(p);
    }
}
