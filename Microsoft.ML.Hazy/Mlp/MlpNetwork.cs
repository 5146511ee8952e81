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

/// <summary>Linear → activation → dropout per hidden layer (optionally with LayerNorm), then a linear head.</summary>
internal sealed class MlpNetwork : nn.Module<Tensor, Tensor>, IOnnxExportable
{
    private readonly Sequential layers;

    public MlpNetwork(int inputSize, IReadOnlyList<int> hidden, int outputSize, MlpActivation activation, double dropout, bool layerNorm)
        : base(nameof(MlpNetwork))
    {
        var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
        int width = inputSize;
        for (int i = 0; i < hidden.Count; i++)
        {
            modules.Add(($"linear{i}", nn.Linear(width, hidden[i])));
            if (layerNorm)
                modules.Add(($"norm{i}", nn.LayerNorm(hidden[i])));
            modules.Add(($"act{i}", activation switch
            {
                MlpActivation.Gelu => nn.GELU(),
                MlpActivation.Tanh => nn.Tanh(),
                _ => (nn.Module<Tensor, Tensor>)nn.ReLU(),
            }));
            if (dropout > 0)
                modules.Add(($"dropout{i}", nn.Dropout(dropout)));
            width = hidden[i];
        }
        modules.Add(("head", nn.Linear(width, outputSize)));
        layers = nn.Sequential(modules);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => layers.forward(input);

    public string ExportOnnx(OnnxGraphBuilder graph, string input) => OnnxModuleExporter.Export(graph, layers, input);
}
