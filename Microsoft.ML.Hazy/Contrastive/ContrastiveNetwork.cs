using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Contrastive;

/// <summary>
/// What a contrastive trainer trains: an encoder to D values (the Hazy MLP, CNN or sequence network), the embedding as the model outputs it,
/// a linear classifier of the (coarse) label over it, and, for the class-conditional autoencoder, an MLP decoder from the
/// embedding back to the input. Only the encoder is exported. Its forward is the classifier's logits, which the training
/// loop validates with. Over a sequence column it receives each row's length and passes it to the sequence encoder.
/// </summary>
internal sealed class ContrastiveNetwork : nn.Module<Tensor, Tensor>, ISeededModule, ISequenceNetwork
{
    private readonly nn.Module<Tensor, Tensor> encoder;
    private readonly Linear classifier;
    private readonly Sequential? decoder;
    private readonly EmbeddingHead _head;
    private readonly Func<nn.Module<Tensor, Tensor>> _newEncoder;

    public ContrastiveNetwork(Func<nn.Module<Tensor, Tensor>> newEncoder, EmbeddingHead head, int classes, int inputSize, int[]? decoderHidden)
        : base(nameof(ContrastiveNetwork))
    {
        _head = head;
        _newEncoder = newEncoder;
        encoder = newEncoder();
        classifier = nn.Linear(head.Size, classes);
        if (decoderHidden is not null)
            decoder = Decoder(head.Size, decoderHidden, inputSize);
        RegisterComponents();
    }

    private static Sequential Decoder(int size, int[] hidden, int inputSize)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int width = size;
        for (int i = 0; i < hidden.Length; i++)
        {
            layers.Add(($"linear{i}", nn.Linear(width, hidden[i])));
            layers.Add(($"relu{i}", nn.ReLU()));
            width = hidden[i];
        }
        layers.Add(("output", nn.Linear(width, inputSize)));
        return nn.Sequential(layers);
    }

    public bool HasDecoder => decoder is not null;

    /// <summary>The embedding as the model outputs it (normalised when the head says so), [B, D]; <paramref name="lengths"/> for a sequence encoder.</summary>
    public Tensor Embed(Tensor input, Tensor? lengths = null)
    {
        using var raw = Encode(input, lengths);
        return _head.Score(raw);
    }

    /// <summary>The encoder's forward, batch normalisation without TorchSharp's finalizer-freed Scalar (<see cref="BatchNormForward"/>).</summary>
    private Tensor Encode(Tensor input, Tensor? lengths) =>
        encoder is ISequenceNetwork sequence ? sequence.forward(input, lengths)
        : encoder is ILayeredNetwork layered && layered.Layers.Any(l => l is BatchNorm2d)
            ? BatchNormForward.Sequential(layered.Layers, input) : encoder.forward(input);

    public Tensor Classify(Tensor embedding) => classifier.forward(embedding);

    public Tensor Decode(Tensor embedding) =>
        (decoder ?? throw new InvalidOperationException("This network has no decoder.")).forward(embedding);

    public override Tensor forward(Tensor input) => forward(input, null);

    public Tensor forward(Tensor input, Tensor? lengths)
    {
        using var embedding = Embed(input, lengths);
        return classifier.forward(embedding);
    }

    public CancellationToken Cancellation
    {
        get => (encoder as ISequenceNetwork)?.Cancellation ?? default;
        set
        {
            if (encoder is ISequenceNetwork sequence)
                sequence.Cancellation = value;
        }
    }

    /// <summary>Never called: only the encoder is exported (<see cref="CopyEncoder"/>).</summary>
    public string ExportOnnx(OnnxGraphBuilder graph, string input, int maxLength, string? mask) =>
        throw new NotSupportedException("Only the contrastive network's encoder is exported.");

    /// <summary>A copy of the trained encoder in evaluation mode, holding its own weights, so this network can be disposed.</summary>
    public nn.Module<Tensor, Tensor> CopyEncoder()
    {
        var copy = _newEncoder();
        copy.to(encoder.parameters().First().device);
        using (no_grad())
            copy.load_state_dict(encoder.state_dict());
        copy.eval();
        return copy;
    }

    public void ResetParameters(Generator generator)
    {
        // No parameters of its own: the encoder, classifier and decoder are initialised as children.
    }

    public Generator? Generator { get; set; }

    /// <summary>The MLP or CNN encoder a trainer's options ask for, to <paramref name="size"/> values (the sequence encoder is built by the trainer).</summary>
    public static Func<nn.Module<Tensor, Tensor>> EncoderFactory(ContrastiveTrainer.Options o, int inputSize, int size) => o.Encoder switch
    {
        ContrastiveEncoder.Cnn => () => new CnnNetwork(o.Channels, o.Height, o.Width, o.Filters, o.KernelSize, o.Stride, o.Padding, 0, size),
        _ => () => new MlpNetwork(inputSize, o.HiddenLayers, size, MlpActivation.Relu, 0, layerNorm: false),
    };
}

/// <summary>
/// The objective of a contrastive trainer on one batch: two augmented views through the encoder, the weighted contrastive
/// loss (view 1 anchors, view 0 candidates), cross-entropy of the classifier on both views' embeddings, and the mean squared
/// error of the decoder's reconstruction of view 0 from its embedding.
/// </summary>
internal sealed class ContrastiveObjective : ITrainingObjective
{
    private readonly Func<ContrastiveNetwork> _network;
    private readonly ContrastiveTrainer.Options _options;

    public ContrastiveObjective(Func<ContrastiveNetwork> network, ContrastiveTrainer.Options options)
    {
        _network = network;
        _options = options;
    }

    private Tensor View(Tensor x, Generator? generator) =>
        _options.Augmentation is { } a && _options.Height > 0 ? a.View(x, _options.Channels, _options.Height, _options.Width, generator) : x.alias();

    /// <remarks>
    /// No dispose scope of its own: the training loop's step scope frees the intermediates after the backward pass. Freeing them
    /// here would free outputs that a custom autograd function's backward still reads (FlashAttention's log-sum-exp).
    /// </remarks>
    public Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch)
    {
        var network = _network();
        var o = _options;
        var labels = batch.Labels ?? throw new InvalidOperationException("A contrastive trainer needs the label column in the batch.");
        bool contrastive = o.Loss is not null && o.ContrastiveWeight > 0;
        var x = batch.Features;
        var lengths = batch.Lengths;
        var view0 = View(x, network.Generator);
        Tensor embeddings, embedding0, classLabels;
        Tensor total = zeros(1, dtype: x.dtype, device: x.device).squeeze();
        if (contrastive)
        {
            var view1 = View(x, network.Generator);
            // A sequence encoder's augmenter draws each copy's crop, mask, scale and jitter independently: two views of each row.
            embeddings = network.Embed(cat(new[] { view0, view1 }, 0), lengths is null ? null : cat(new[] { lengths, lengths }, 0));
            var parts = embeddings.chunk(2, 0);
            embedding0 = parts[0];
            using var c = o.ContrastiveWeight.ToScalar();
            total = total.add(o.Loss!.Compute(parts[0], parts[1], labels), c);
            classLabels = cat(new[] { labels, labels }, 0);
        }
        else
        {
            embeddings = network.Embed(view0, lengths);
            embedding0 = embeddings;
            classLabels = labels;
        }

        // With no classification weight the classifier still learns, from detached embeddings, so validation accuracy means something.
        var classified = o.ClassificationWeight > 0 ? embeddings : embeddings.detach();
        var ce = nn.functional.cross_entropy(network.Classify(classified), classLabels);
        using var w = (o.ClassificationWeight > 0 ? o.ClassificationWeight : 1.0).ToScalar();
        total = total.add(ce, w);

        if (network.HasDecoder && o.ReconstructionWeight > 0)
        {
            var reconstruction = network.Decode(embedding0);
            var mse = nn.functional.mse_loss(reconstruction, view0);
            using var r = o.ReconstructionWeight.ToScalar();
            total = total.add(mse, r);
        }
        return total;
    }
}
