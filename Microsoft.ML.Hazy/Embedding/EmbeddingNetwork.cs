using Microsoft.ML.Hazy.Heads;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Embedding;

/// <summary>
/// What the embedding trainer trains: an MLP encoder to D values, the embedding as the model will output it (L2-normalised
/// when asked), and a linear classifier over it. Only the encoder is exported; the classifier is the training signal.
/// </summary>
internal sealed class EmbeddingClassifier : nn.Module<Tensor, Tensor>
{
    private readonly Sequential encoder;
    private readonly Linear classifier;
    private readonly EmbeddingHead _head;

    public EmbeddingClassifier(int inputSize, int[] hiddenLayers, EmbeddingHead head, int classes) : base(nameof(EmbeddingClassifier))
    {
        _head = head;
        encoder = CreateEncoder(inputSize, hiddenLayers, head.Size);
        classifier = nn.Linear(head.Size, classes);
        RegisterComponents();
    }

    /// <summary>The encoder: Linear and ReLU per hidden layer, then Linear to the embedding size.</summary>
    public static Sequential CreateEncoder(int inputSize, int[] hiddenLayers, int size)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int width = inputSize;
        for (int i = 0; i < hiddenLayers.Length; i++)
        {
            layers.Add(($"linear{i}", nn.Linear(width, hiddenLayers[i])));
            layers.Add(($"relu{i}", nn.ReLU()));
            width = hiddenLayers[i];
        }
        layers.Add(("embedding", nn.Linear(width, size)));
        return nn.Sequential(layers);
    }

    /// <summary>The class logits of the embedding the model outputs.</summary>
    public override Tensor forward(Tensor input)
    {
        using var raw = encoder.forward(input);
        using var embedding = _head.Score(raw);
        return classifier.forward(embedding);
    }

    /// <summary>
    /// A copy of the trained encoder on the same device, holding its own weights, so this network (classifier included) can be
    /// disposed.
    /// </summary>
    public Sequential CopyEncoder(int inputSize, int[] hiddenLayers)
    {
        var copy = CreateEncoder(inputSize, hiddenLayers, _head.Size);
        copy.to(encoder.parameters().First().device);
        using (no_grad())
            copy.load_state_dict(encoder.state_dict());
        copy.eval();
        return copy;
    }
}
