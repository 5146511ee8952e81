using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>The normalisation of the residual blocks.</summary>
public enum SequenceNormalization
{
    /// <summary>LayerNorm over the features of each time step.</summary>
    LayerNorm,
    /// <summary>BatchNorm over the batch and the valid time steps of each feature (the reference's choice for LRA).</summary>
    BatchNorm,
}

/// <summary>A normalisation over the feature axis of [B, L, H] (or [B, H] while streaming) that may see a padding mask.</summary>
internal abstract class SequenceNorm : nn.Module<Tensor, Tensor>
{
    protected SequenceNorm(string name) : base(name)
    {
    }

    public override Tensor forward(Tensor input) => forward(input, null);

    public abstract Tensor forward(Tensor input, Tensor? mask);

    public abstract string ExportOnnx(OnnxGraphBuilder graph, string input);

    public static SequenceNorm Create(SequenceNormalization kind, int width) =>
        kind == SequenceNormalization.BatchNorm ? new SequenceBatchNorm(width) : new SequenceLayerNorm(width);
}

internal sealed class SequenceLayerNorm : SequenceNorm
{
    private readonly LayerNorm norm;

    public SequenceLayerNorm(int width) : base(nameof(SequenceLayerNorm))
    {
        norm = nn.LayerNorm(width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor? mask) => norm.forward(input);

    public override string ExportOnnx(OnnxGraphBuilder graph, string input) =>
        OnnxModuleExporter.LayerNormalization(graph, input, norm.weight, norm.bias, 1, norm.eps);
}

/// <summary>
/// BatchNorm over the last axis whose training statistics count valid steps only, so padding never shifts
/// them; in evaluation it is the per-feature affine map of the running statistics.
/// </summary>
internal sealed class SequenceBatchNorm : SequenceNorm, ISeededModule
{
    private const double Momentum = 0.1;
    private const double Epsilon = 1e-5;
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor running_mean;
    private readonly Tensor running_var;

    public SequenceBatchNorm(int width) : base(nameof(SequenceBatchNorm))
    {
        weight = new Parameter(ones(width));
        bias = new Parameter(zeros(width));
        running_mean = zeros(width);
        running_var = ones(width);
        RegisterComponents();
    }

    /// <summary>Unused: batch norm draws nothing.</summary>
    public Generator? Generator { get; set; }

    /// <summary>The scale starts at one and the shift at zero: nothing to draw.</summary>
    public void ResetParameters(Generator generator)
    {
    }

    public override Tensor forward(Tensor input, Tensor? mask)
    {
        using var one = 1.ToScalar();
        if (!training)
            return (input * Scale()).add(Shift(), one);
        long width = input.shape[^1];
        // Unpadded batches take libtorch's fused kernel (same statistics, running variance unbiased as below).
        if (mask is null)
            return nn.functional.batch_norm(input.reshape(-1, width), running_mean, running_var, weight, bias, true, Momentum, Epsilon).reshape(input.shape);
        var dims = Enumerable.Range(0, (int)input.dim() - 1).Select(d => (long)d).ToArray();
        var count = mask.sum();
        var mean = (input * mask).sum(dims) / count;
        using var two = 2.ToScalar();
        var variance = ((input - mean).pow(two) * mask).sum(dims) / count;
        using (no_grad())
        {
            using var decay = (1 - Momentum).ToScalar();
            using var momentum = Momentum.ToScalar();
            var unbiased = variance * count / (count - one).clamp_min(one);
            running_mean.mul_(decay).add_(mean.detach() * momentum, one);
            running_var.mul_(decay).add_(unbiased.detach() * momentum, one);
        }
        using var epsilon = Epsilon.ToScalar();
        return ((input - mean) / variance.add(epsilon, one).sqrt() * weight).add(bias, one);
    }

    public override string ExportOnnx(OnnxGraphBuilder graph, string input)
    {
        using var scale = Scale();
        using var shift = Shift();
        return graph.Node("Add", new[] { graph.Node("Mul", new[] { input, graph.AddInitializer("bn_scale", scale) }), graph.AddInitializer("bn_shift", shift) });
    }

    private Tensor Scale()
    {
        using var epsilon = Epsilon.ToScalar();
        using var one = 1.ToScalar();
        return weight / running_var.add(epsilon, one).sqrt();
    }

    private Tensor Shift() => bias - running_mean * Scale();
}

/// <summary>
/// x + dropout(layer(norm(x))) with pre-norm, or norm(x + dropout(layer(x))) with post-norm, around any
/// <see cref="ISequenceLayer"/>.
/// </summary>
internal sealed class SequenceResidualBlock : nn.Module<Tensor, Tensor>, ISeededModule
{
    private readonly nn.Module<Tensor, Tensor> layer;
    private readonly SequenceNorm norm;
    private readonly bool _preNorm;
    private readonly double _dropout;

    public SequenceResidualBlock(nn.Module<Tensor, Tensor> layer, SequenceNorm norm, bool preNorm, double dropout)
        : base(nameof(SequenceResidualBlock))
    {
        if (layer is not ISequenceLayer)
            throw new ArgumentException($"A sequence backbone layer must implement {nameof(ISequenceLayer)}; {layer.GetType().Name} does not.", nameof(layer));
        this.layer = layer;
        this.norm = norm;
        _preNorm = preNorm;
        _dropout = dropout;
        RegisterComponents();
    }

    public ISequenceLayer Layer => (ISequenceLayer)layer;

    public Generator? Generator { get; set; }

    public void ResetParameters(Generator generator)
    {
    }

    public override Tensor forward(Tensor input) => forward(input, null);

    public Tensor forward(Tensor input, Tensor? mask)
    {
        var z = _preNorm ? norm.forward(input, mask) : input;
        z = TiedDropout.Apply(Layer.Forward(z, mask), _dropout, training, Generator);
        using var one = 1.ToScalar();
        var x = input.add(z, one);
        return _preNorm ? x : norm.forward(x, mask);
    }

    public string ExportOnnx(OnnxGraphBuilder graph, string input, string? mask, int maxLength)
    {
        var z = _preNorm ? norm.ExportOnnx(graph, input) : input;
        z = Layer.ExportOnnx(graph, z, mask, maxLength);
        var x = graph.Node("Add", new[] { input, z });
        return _preNorm ? x : norm.ExportOnnx(graph, x);
    }

    /// <summary>One streaming step of the block, [B, H] → [B, H].</summary>
    public Tensor Step(ISequenceLayerStepper stepper, Tensor input)
    {
        var z = stepper.Step(_preNorm ? norm.forward(input) : input);
        using var one = 1.ToScalar();
        var x = input.add(z, one);
        return _preNorm ? x : norm.forward(x);
    }
}

/// <summary>
/// Optional per-series z-normalisation and (training only) augmentation of the input, linear encoder C → H, residual blocks of
/// backbone layers, pooling over the valid steps, linear decoder H → outputs. Input [B, L, C] time-major; output logits or
/// predictions [B, outputs].
/// </summary>
internal sealed partial class SequenceNetwork : nn.Module<Tensor, Tensor>, ISequenceNetwork, IFeatureNetwork
{
    private readonly Linear encoder;
    private readonly ModuleList<SequenceResidualBlock> blocks;
    private readonly SequenceNorm? final_norm;
    private readonly SequencePool pool;
    private readonly SequenceAugmenter? augmenter;
    private readonly Linear decoder;

    public SequenceNetwork(int channels, int outputs, int layers, SequenceNetworkShape shape, SequenceNormalization normalization, bool preNorm,
        ISequenceBackboneFactory backbone, SequenceInputTreatment? treatment = null)
        : base(nameof(SequenceNetwork))
    {
        Channels = channels;
        Shape = shape;
        Treatment = treatment ?? SequenceInputTreatment.None;
        Recipe = Describe(channels, outputs, layers, shape, normalization, preNorm, backbone, Treatment);
        encoder = nn.Linear(channels, shape.Width);
        blocks = new ModuleList<SequenceResidualBlock>();
        for (int i = 0; i < layers; i++)
        {
            foreach (var layer in backbone.CreateLayers(i, shape))
                blocks.Add(new SequenceResidualBlock(layer, SequenceNorm.Create(normalization, shape.Width), preNorm, shape.Dropout));
        }
        if (preNorm)
            final_norm = SequenceNorm.Create(normalization, shape.Width);
        pool = new SequencePool(Treatment.Pooling, shape.Width);
        if (Treatment.Augmentation is { IsIdentity: false } augmentation)
            augmenter = new SequenceAugmenter(augmentation);
        decoder = nn.Linear(shape.Width, outputs);
        RegisterComponents();
    }

    /// <summary>Values per time step.</summary>
    public int Channels { get; }

    public SequenceNetworkShape Shape { get; }

    /// <summary>What the network does with the input before its encoder and how it pools.</summary>
    public SequenceInputTreatment Treatment { get; }

    public IEnumerable<SequenceResidualBlock> Blocks => blocks;

    /// <inheritdoc/>
    public CancellationToken Cancellation { get; set; }

    /// <summary>
    /// The estimated peak memory of one training step on <paramref name="rows"/> rows of <paramref name="steps"/> time steps:
    /// 4 bytes × B × L × (Σ over layers of (v + 5H) + C + 2H), where v is the layer's own values per step
    /// (<see cref="ISequenceBackboneFactory.TrainingValuesPerStep"/>), 5H its residual block's dropout mask and output, sum
    /// and normalisation, and C + 2H the input, encoder output and pooling. Parameters, gradients and optimizer state have
    /// no B·L factor and are left out; the backward's transient gradients keep the peak within about twice this.
    /// </summary>
    public static double TrainingBytes(ISequenceBackboneFactory backbone, SequenceNetworkShape shape, int layers, int channels, long rows, long steps)
    {
        double perStep = channels + 2.0 * shape.Width;
        foreach (double values in backbone.TrainingValuesPerStep(shape))
            perStep += layers * (values + 5.0 * shape.Width);
        return sizeof(float) * (double)rows * steps * perStep;
    }

    public override Tensor forward(Tensor input) => forward(input, null);

    public Tensor forward(Tensor input, Tensor? lengths) => decoder.forward(Features(input, lengths));

    /// <summary>The pooled features the decoder reads, [B, H]: the last block's outputs pooled over the valid steps as the treatment says.</summary>
    public Tensor Features(Tensor input, Tensor? lengths)
    {
        var mask = Mask(lengths, input.shape[1], input.dtype);
        if (Treatment.NormalizeSeries)
            input = SeriesNormalization.Apply(input, mask);
        if (augmenter is not null && training)
        {
            (input, lengths) = augmenter.Augment(input, lengths);
            mask = Mask(lengths, input.shape[1], input.dtype);
        }
        var h = Hidden(input, mask);
        return pool.forward(h, mask);
    }

    /// <summary>The decoder: the output from pooled features.</summary>
    public Tensor Head(Tensor features) => decoder.forward(features);

    /// <summary>The last block's outputs [B, L, H] (after the final norm).</summary>
    public Tensor Hidden(Tensor input, Tensor? mask)
    {
        var h = encoder.forward(input);
        foreach (var block in blocks)
        {
            Cancellation.ThrowIfCancellationRequested();
            h = block.forward(h, mask);
        }
        return final_norm is null ? h : final_norm.forward(h, mask);
    }

    public string ExportOnnx(OnnxGraphBuilder graph, string input, int maxLength, string? mask)
    {
        if (Treatment.NormalizeSeries)
            input = SeriesNormalization.ExportOnnx(graph, input, mask);
        var h = OnnxModuleExporter.Linear(graph, input, encoder.weight, encoder.bias);
        foreach (var block in blocks)
            h = block.ExportOnnx(graph, h, mask, maxLength);
        if (final_norm is not null)
            h = final_norm.ExportOnnx(graph, h);
        return OnnxModuleExporter.Linear(graph, pool.ExportOnnx(graph, h, mask), decoder.weight, decoder.bias);
    }

    /// <summary>A recurrent view of the evaluation-mode network over <paramref name="batchSize"/> parallel streams.</summary>
    public SequenceStreamState CreateStreamState(int batchSize)
    {
        if (Treatment.NormalizeSeries)
            throw new NotSupportedException("A model that z-normalises each series cannot stream one step at a time: the statistics need the whole series.");
        if (Treatment.Pooling == SequencePooling.Attention)
            throw new NotSupportedException("A model with attention pooling cannot stream one step at a time; mean and last-step pooling can.");
        var steppers = new List<ISequenceLayerStepper>();
        foreach (var block in blocks)
        {
            var stepper = block.Layer.CreateStepper(batchSize);
            if (stepper is null)
            {
                foreach (var s in steppers)
                    s.Dispose();
                throw new NotSupportedException(
                    $"The layer {block.Layer.GetType().Name} cannot stream one step at a time"
                    + (Shape.Bidirectional ? " because the model is bidirectional (it looks at later steps)." : "."));
            }
            steppers.Add(stepper);
        }
        return new SequenceStreamState(this, steppers, batchSize);
    }

    /// <summary>One streaming step: the last block's output [B, H] for the input step [B, C].</summary>
    internal Tensor StepHidden(IReadOnlyList<ISequenceLayerStepper> steppers, Tensor input)
    {
        var h = encoder.forward(input);
        int i = 0;
        foreach (var block in blocks)
            h = block.Step(steppers[i++], h);
        return final_norm is null ? h : final_norm.forward(h);
    }

    internal Tensor Decode(Tensor pooled) => decoder.forward(pooled);

    /// <summary>A float [B, L, 1] mask of the valid steps, or null when every row has all <paramref name="length"/> steps.</summary>
    public static Tensor? Mask(Tensor? lengths, long length, ScalarType dtype)
    {
        if (lengths is null || lengths.min().item<long>() >= length)
            return null;
        using var start = 0.ToScalar();
        using var stop = length.ToScalar();
        using var step = 1.ToScalar();
        var positions = arange(start, stop, step, ScalarType.Int64, lengths.device);
        return positions.unsqueeze(0).lt(lengths.unsqueeze(1)).unsqueeze(-1).to(dtype);
    }
}

/// <summary>The input treatment and pooling of a sequence network; <see cref="Augmentation"/> acts in training only and is not part of the saved recipe.</summary>
internal sealed record SequenceInputTreatment(bool NormalizeSeries, SequencePooling Pooling, SequenceAugmentation? Augmentation = null)
{
    public static SequenceInputTreatment None { get; } = new(false, SequencePooling.Mean);
}

/// <summary>The streaming state of a <see cref="SequenceNetwork"/>: each layer's recurrent state and the running pooled sum.</summary>
internal sealed class SequenceStreamState : IDisposable
{
    private readonly SequenceNetwork _network;
    private readonly List<ISequenceLayerStepper> _steppers;
    private Tensor _sum;

    public SequenceStreamState(SequenceNetwork network, List<ISequenceLayerStepper> steppers, int batchSize)
    {
        _network = network;
        _steppers = steppers;
        var p = network.parameters().First();
        _sum = zeros(new long[] { batchSize, network.Shape.Width }, p.dtype, p.device).DetachFromDisposeScope();
    }

    public long Steps { get; private set; }

    /// <summary>Consumes one step [B, C]; returns the last block's output [B, H] and the network output on everything seen so far [B, outputs].</summary>
    public (Tensor Hidden, Tensor Output) Step(Tensor input)
    {
        var hidden = _network.StepHidden(_steppers, input);
        using var one = 1.ToScalar();
        var sum = _sum.add(hidden, one).DetachFromDisposeScope();
        _sum.Dispose();
        _sum = sum;
        Steps++;
        if (_network.Treatment.Pooling == SequencePooling.LastStep)
            return (hidden, _network.Decode(hidden));
        using var steps = Steps.ToScalar();
        return (hidden, _network.Decode(_sum / steps));
    }

    public void Dispose()
    {
        foreach (var s in _steppers)
            s.Dispose();
        _sum.Dispose();
    }
}
