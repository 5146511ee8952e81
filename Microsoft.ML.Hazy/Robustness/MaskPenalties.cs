using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Robustness;

/// <summary>
/// The mask penalties as functions of tensors (spec §5.2). <c>outside</c> is 1 − M with the features' shape (0 for rows
/// without a mask); every function returns a scalar tensor that carries gradients to the network's parameters.
/// </summary>
internal static class MaskPenalties
{
    /// <summary>
    /// The scalar GradMask differentiates: Σ_rows Σ_{c&lt;k} |f_c − f_k| for C ≥ 2 outputs, Σ_rows |f| for one output.
    /// </summary>
    public static Tensor GradMaskScore(Tensor output)
    {
        using var scope = NewDisposeScope();
        if (output.shape[1] == 1)
            return output.abs().sum().MoveToOuterDisposeScope();
        using var left = output.unsqueeze(2);
        using var right = output.unsqueeze(1);
        using var differences = left.sub(right);
        using var half = 0.5.ToScalar();
        // Each unordered pair appears twice in the C×C differences.
        return differences.abs().sum().mul(half).MoveToOuterDisposeScope();
    }

    /// <summary>The scalar RRR differentiates: the log-probabilities of every class summed over the batch.</summary>
    public static Tensor RrrScore(Tensor output)
    {
        using var scope = NewDisposeScope();
        if (output.shape[1] == 1)
        {
            using var negative = output.neg();
            using var one = 1.ToScalar();
            return nn.functional.logsigmoid(output).sum().add(nn.functional.logsigmoid(negative).sum(), one).MoveToOuterDisposeScope();
        }
        return nn.functional.log_softmax(output, 1).sum().MoveToOuterDisposeScope();
    }

    /// <summary>∂<paramref name="score"/>/∂<paramref name="input"/>, kept differentiable (double backprop).</summary>
    public static Tensor InputGradient(Tensor score, Tensor input) =>
        autograd.grad(new[] { score }, new[] { input }, retain_graph: true, create_graph: true)[0];

    /// <summary>GradMask: Σ |∂s/∂x ⊙ outside|, s = <see cref="GradMaskScore"/> of the output of <paramref name="input"/>.</summary>
    public static Tensor GradMask(Tensor output, Tensor input, Tensor outside)
    {
        using var score = GradMaskScore(output);
        using var gradient = InputGradient(score, input);
        using var masked = gradient.mul(outside);
        return masked.abs().sum();
    }

    /// <summary>RRR: Σ (∂s/∂x ⊙ outside)², s = <see cref="RrrScore"/> of the output of <paramref name="input"/>.</summary>
    public static Tensor Rrr(Tensor output, Tensor input, Tensor outside)
    {
        using var score = RrrScore(output);
        using var gradient = InputGradient(score, input);
        using var masked = gradient.mul(outside);
        using var two = 2.ToScalar();
        using var squared = masked.pow(two);
        return squared.sum();
    }

    /// <summary>
    /// ActDiff: the mean over layers of the batch mean of ‖a(x) − a(x̃)‖₂ per row, each row's distance times
    /// <paramref name="rowWeight"/> (1 with a mask, 0 without).
    /// </summary>
    public static Tensor ActivationDifference(IReadOnlyList<Tensor> original, IReadOnlyList<Tensor> shuffled, Tensor rowWeight)
    {
        if (original.Count == 0 || original.Count != shuffled.Count)
            throw new ArgumentException("ActDiff compares the same, non-empty list of layers of both views.", nameof(shuffled));
        using var scope = NewDisposeScope();
        Tensor? total = null;
        using var one = 1.ToScalar();
        for (int i = 0; i < original.Count; i++)
        {
            var a = original[i].flatten(1);
            var b = shuffled[i].flatten(1);
            var distance = linalg.vector_norm(a.sub(b), 2, new long[] { 1 });
            var layer = distance.mul(rowWeight).mean();
            total = total is null ? layer : total.add(layer, one);
        }
        using var count = ((double)original.Count).ToScalar();
        return total!.div(count).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// x with the values where <paramref name="outside"/> &gt; 0 permuted at random within each row (all of a row's outside
    /// values trade places among themselves; inside values stay), detached. <paramref name="input"/> is [B, ...]; the
    /// permutation is over all of a row's values. Keys are drawn on the CPU from <paramref name="generator"/>.
    /// </summary>
    public static Tensor ShuffleOutside(Tensor input, Tensor outside, Generator generator)
    {
        using var scope = NewDisposeScope();
        var shape = input.shape;
        long b = shape[0];
        var x = input.detach().reshape(b, -1);
        long d = x.shape[1];
        var isOutside = outside.reshape(b, -1).gt(0.ToScalar()).cpu();
        // Random keys in [0, 1) outside; 2 + position / d inside, so a sort puts the outside positions first in random order and
        // the inside ones after them in place order.
        var random = rand(new long[] { b, d }, dtype: float64, generator: generator);
        using var zero = 0.ToScalar();
        using var dScalar = ((double)d).ToScalar();
        using var minusD = (-(double)d).ToScalar();
        using var two = 2.ToScalar();
        using var one = 1.ToScalar();
        var position = arange(zero, dScalar, one, dtype: float64).unsqueeze(0).expand(b, d);
        var inPlace = position.div(dScalar).add(two, one);
        var source = argsort(where(isOutside, random, inPlace), 1);
        // The same split, the outside positions in place order: the targets the shuffled values go to.
        var target = argsort(where(isOutside, position.add(minusD, one), inPlace), 1);
        var device = input.device;
        var values = x.gather(1, source.to(device));
        var result = x.clone().scatter_(1, target.to(device), values);
        return result.reshape(shape).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The supervised objective with a mask penalty added (<see cref="MaskPenaltyOptions"/>); the penalty acts only while the
/// network is in training mode and is skipped for a batch without a value outside any row's mask.
/// </summary>
internal sealed class MaskPenaltyObjective : ITrainingObjective, INetworkObjective
{
    private readonly MaskPenaltyOptions _options;
    private readonly ITrainingObjective _supervised;
    private readonly OutputHead _head;
    private nn.Module<Tensor, Tensor>? _network;
    private Generator? _generator;

    public MaskPenaltyObjective(MaskPenaltyOptions options, ITrainingObjective supervised, OutputHead head)
    {
        _options = options;
        _supervised = supervised;
        _head = head;
    }

    public void Attach(nn.Module<Tensor, Tensor> network, Generator generator)
    {
        _network = network;
        _generator = generator;
        if (_options.Kind != MaskPenaltyKind.ActDiff)
            return;
        if (network is ILayeredNetwork layered)
        {
            int count = layered.Layers.Count;
            var bad = _options.ActivationLayers.Where(i => i >= count).ToArray();
            if (bad.Length > 0)
                throw new ArgumentOutOfRangeException(nameof(MaskPenaltyOptions.ActivationLayers), $"[{string.Join(", ", bad)}]",
                    $"Options.Penalty.ActivationLayers must be indices of the network's {count} layers (0 to {count - 1}).");
        }
        else if (network is IFeatureNetwork)
        {
            if (_options.ActivationLayers.Length > 0)
                throw new ArgumentOutOfRangeException(nameof(MaskPenaltyOptions.ActivationLayers), $"[{string.Join(", ", _options.ActivationLayers)}]",
                    "This network compares only its pooled features in ActDiff; leave Options.Penalty.ActivationLayers empty.");
        }
        else
        {
            throw new NotSupportedException($"ActDiff needs a network that exposes its features; {network.GetType().Name} does not.");
        }
    }

    public Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch)
    {
        double lambda = _options.EffectiveWeight;
        bool adversarial = _options.Kind == MaskPenaltyKind.ActDiff && _options.AdversarialWeight > 0;
        if (_network is { training: false } || (lambda == 0 && !adversarial))
            return _supervised.Loss(forward, batch);
        using var outside = Outside(batch);
        using var mass = outside.sum();
        if (mass.item<float>() == 0)
            return _supervised.Loss(forward, batch);
        using var weight = (_options.Kind == MaskPenaltyKind.ActDiff && _options.ReferenceActDiffWeight ? 1.0 : lambda).ToScalar();
        switch (_options.Kind)
        {
            case MaskPenaltyKind.ActDiff:
            {
                var network = _network ?? throw new InvalidOperationException("ActDiff needs the network: the trainer attaches it before training.");
                using var rowWeight = outside.reshape(batch.Count, -1).amax(new long[] { 1 }).gt(0.ToScalar()).to(batch.Features.dtype);
                using var shuffled = MaskPenalties.ShuffleOutside(batch.Features, outside, _generator ?? throw new InvalidOperationException("No generator attached."));
                var (output, original) = Activations(network, batch.Features, batch.Lengths, withOutput: true);
                var (_, other) = Activations(network, shuffled, batch.Lengths, withOutput: false);
                using var loss = _supervised.Loss(_ => output!.alias(), batch);
                using var penalty = MaskPenalties.ActivationDifference(original, other, rowWeight);
                using var adversarialTerm = adversarial ? Adversarial(original[^1], other[^1], rowWeight) : null;
                output!.Dispose();
                foreach (var t in original.Concat(other))
                    t.Dispose();
                var total = loss.add(penalty, weight);
                if (adversarialTerm is null)
                    return total;
                using (total)
                {
                    using var adversarialWeight = _options.AdversarialWeight.ToScalar();
                    return total.add(adversarialTerm, adversarialWeight);
                }
            }
            default:
            {
                using var x = batch.Features.detach().requires_grad_(true);
                using var view = batch.WithFeatures(x);
                Tensor? output = null;
                using var loss = _supervised.Loss(b =>
                {
                    var y = forward(b);
                    output ??= y.alias();
                    return y;
                }, view);
                if (output is null)
                    throw new InvalidOperationException("The supervised objective did not run the forward pass.");
                using (output)
                {
                    using var penalty = _options.Kind == MaskPenaltyKind.Rrr ? MaskPenalties.Rrr(output, x, outside) : MaskPenalties.GradMask(output, x, outside);
                    return loss.add(penalty, weight);
                }
            }
        }
    }

    private ActDiffDiscriminator? _discriminator;

    /// <summary>The adversarial variant's discriminator, once the first training step created it.</summary>
    internal ActDiffDiscriminator? Discriminator => _discriminator;

    /// <summary>
    /// The adversarial ("disc") term: one discriminator step on the detached activations of x (label 1) and x̃ (label 0), then
    /// the cross-entropy of the swapped labels through the updated discriminator, which trains the network to make x̃'s
    /// activations look like x's and the reverse. Rows without a mask count in neither.
    /// </summary>
    private Tensor Adversarial(Tensor original, Tensor shuffled, Tensor rowWeight)
    {
        using var scope = NewDisposeScope();
        var real = original.flatten(1);
        var fake = shuffled.flatten(1);
        if (_discriminator is null)
        {
            _discriminator = new ActDiffDiscriminator(real.shape[1], _generator ?? throw new InvalidOperationException("No generator attached."),
                _options.DiscriminatorLearningRate);
            _discriminator.to(real.device);
        }
        else if (_discriminator.Width != real.shape[1])
        {
            throw new InvalidOperationException($"ActDiff's compared activations changed width from {_discriminator.Width} to {real.shape[1]} values per row.");
        }
        var ones = ones_like(rowWeight);
        var zeros = zeros_like(rowWeight);
        using (var realDetached = real.detach())
        using (var fakeDetached = fake.detach())
            _discriminator.Step(realDetached, fakeDetached, ones, zeros, rowWeight);
        using var one = 1.ToScalar();
        var fooled = Bce(_discriminator.forward(real), zeros, rowWeight).add(Bce(_discriminator.forward(fake), ones, rowWeight), one);
        return fooled.MoveToOuterDisposeScope();
    }

    /// <summary>Binary cross-entropy of logits against targets, averaged over the rows with weight 1.</summary>
    internal static Tensor Bce(Tensor logits, Tensor targets, Tensor rowWeight)
    {
        using var scope = NewDisposeScope();
        var rows = nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), targets, reduction: nn.Reduction.None);
        using var one = 1.ToScalar();
        var count = rowWeight.sum().clamp_min(one);
        return rows.mul(rowWeight).sum().div(count).MoveToOuterDisposeScope();
    }

    private static bool SameLengths(Tensor a, Tensor b)
    {
        using var same = a.eq(b);
        using var all = same.all();
        return all.item<bool>();
    }

    /// <summary>1 − M with the features' shape, times each row's has-mask flag; checks the mask lines up with the features.</summary>
    private Tensor Outside(TensorBatch batch)
    {
        var mask = batch.Column(MaskPenaltyOptions.MaskBatchColumn);
        var features = batch.Features;
        string column = _options.MaskColumnName;
        if (!mask.shape.SequenceEqual(features.shape))
            throw new InvalidOperationException(
                $"Column '{column}' (the mask) gives a batch of shape [{string.Join(", ", mask.shape)}]; expected the features' shape [{string.Join(", ", features.shape)}]: every row's mask needs as many values as its features.");
        if (batch.Lengths is { } lengths && batch.TryGetColumn(MaskPenaltyOptions.MaskBatchColumn + TensorBatch.LengthsSuffix, out var maskLengths)
            && !SameLengths(lengths, maskLengths))
            throw new InvalidOperationException($"Column '{column}' (the mask) has rows of other lengths than the features' rows; every row's mask needs as many values as its features.");
        using var low = mask.min();
        using var high = mask.max();
        if (low.item<float>() < 0 || high.item<float>() > 1)
            throw new InvalidOperationException(
                $"Column '{column}' (the mask) holds values from {low.item<float>()} to {high.item<float>()}; expected values in [0, 1] (1 inside the relevant region).");
        using var one = 1.ToScalar();
        using var complement = mask.neg().add(one, one);
        if (!batch.TryGetColumn(MaskPenaltyOptions.HasMaskBatchColumn, out var has))
            return complement.to(features.dtype);
        var shape = new long[features.shape.Length];
        Array.Fill(shape, 1L);
        shape[0] = batch.Count;
        using var flag = has.gt(0.ToScalar()).to(features.dtype).reshape(shape);
        return complement.to(features.dtype).mul(flag);
    }

    /// <summary>
    /// The compared activations of <paramref name="input"/> (the chosen layers' outputs, or the features the last layer reads)
    /// and, with <paramref name="withOutput"/>, the network's output from the same pass.
    /// </summary>
    internal (Tensor? Output, List<Tensor> Activations) Activations(nn.Module<Tensor, Tensor> network, Tensor input, Tensor? lengths, bool withOutput)
    {
        var activations = new List<Tensor>();
        if (network is IFeatureNetwork features)
        {
            var pooled = features.Features(input, lengths);
            activations.Add(pooled);
            return (withOutput ? features.Head(pooled) : null, activations);
        }
        var layers = ((ILayeredNetwork)network).Layers;
        var chosen = _options.ActivationLayers.Length > 0 ? new HashSet<int>(_options.ActivationLayers) : new HashSet<int> { layers.Count - 2 };
        int last = withOutput ? layers.Count - 1 : chosen.Max();
        var h = input;
        for (int i = 0; i <= last; i++)
        {
            var next = layers[i].forward(h);
            if (chosen.Contains(i))
                activations.Add(next.alias());
            if (!ReferenceEquals(h, input))
                h.Dispose();
            h = next;
        }
        if (_options.ActivationLayers.Length == 0 && layers.Count == 1)
            activations.Add(input.alias());
        return (withOutput ? h : null, activations);
    }
}

/// <summary>
/// The discriminator of ActDiff's adversarial variant: Linear(D, 64) → ReLU → Linear(64, 1), initialised from the run's
/// generator, with its own Adam optimiser (the trainer's optimiser never sees its parameters).
/// </summary>
internal sealed class ActDiffDiscriminator : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Sequential layers;
    private readonly optim.Optimizer _optimizer;

    public ActDiffDiscriminator(long width, Generator generator, double learningRate) : base(nameof(ActDiffDiscriminator))
    {
        Width = width;
        layers = nn.Sequential(("hidden", nn.Linear(width, 64)), ("relu", nn.ReLU()), ("logit", nn.Linear(64, 1)));
        RegisterComponents();
        TrainingRandom.Initialize(this, generator);
        _optimizer = optim.Adam(parameters(), learningRate);
    }

    public long Width { get; }

    /// <summary>The discriminator's loss before its last step.</summary>
    public double LastLoss { get; private set; } = double.NaN;

    public override Tensor forward(Tensor input) => layers.forward(input);

    /// <summary>One Adam step on the cross-entropy of telling <paramref name="real"/> (label 1) from <paramref name="fake"/> (label 0).</summary>
    public void Step(Tensor real, Tensor fake, Tensor ones, Tensor zeros, Tensor rowWeight)
    {
        using var scope = NewDisposeScope();
        using var enabled = enable_grad();
        _optimizer.zero_grad();
        using var one = 1.ToScalar();
        var loss = MaskPenaltyObjective.Bce(forward(real), ones, rowWeight).add(MaskPenaltyObjective.Bce(forward(fake), zeros, rowWeight), one);
        loss.backward();
        _optimizer.step();
        LastLoss = loss.item<float>();
        // The network's adversarial term backpropagates into these parameters too; the next step clears that first.
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _optimizer.Dispose();
        base.Dispose(disposing);
    }
}
