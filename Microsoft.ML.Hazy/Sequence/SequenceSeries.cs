using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>How a sequence network turns its last block's outputs [B, L, H] into one vector per row.</summary>
public enum SequencePooling
{
    /// <summary>The mean over the valid time steps.</summary>
    Mean,
    /// <summary>The output at each row's last valid time step (what a causal model has seen of the whole row).</summary>
    LastStep,
    /// <summary>A learned softmax-weighted mean over the valid time steps: weights softmax(w·h_t + b) over t.</summary>
    Attention,
}

/// <summary>Per-series, per-channel z-normalisation over the valid steps, in TorchSharp and in ONNX.</summary>
internal static class SeriesNormalization
{
    /// <summary>Added to each variance so a constant channel becomes zeros rather than NaN.</summary>
    public const double VarianceEpsilon = 1e-8;

    /// <summary>(x − μ) / √(σ² + ε) per row and channel, μ and σ² (population) over the valid steps; padded steps stay 0.</summary>
    public static Tensor Apply(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        using var epsilon = VarianceEpsilon.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        var dims = new long[] { 1 };
        Tensor y;
        if (mask is null)
        {
            var mean = x.mean(dims, keepdim: true);
            var centred = x.sub(mean);
            var variance = centred.pow(two).mean(dims, keepdim: true);
            y = centred.div(variance.add(epsilon, one).sqrt());
        }
        else
        {
            var count = mask.sum(dims, keepdim: true);
            var mean = x.mul(mask).sum(dims, keepdim: true).div(count);
            var centred = x.sub(mean).mul(mask);
            var variance = centred.pow(two).sum(dims, keepdim: true).div(count);
            y = centred.div(variance.add(epsilon, one).sqrt());
        }
        return y.MoveToOuterDisposeScope();
    }

    public static string ExportOnnx(OnnxGraphBuilder g, string x, string? mask)
    {
        var axis = g.Int64s(1);
        var keep = OnnxAttribute.Int("keepdims", 1);
        string mean, centred, variance;
        if (mask is null)
        {
            mean = g.Node("ReduceMean", new[] { x }, OnnxAttribute.Ints("axes", 1), keep);
            centred = g.Node("Sub", new[] { x, mean });
            variance = g.Node("ReduceMean", new[] { g.Node("Mul", new[] { centred, centred }) }, OnnxAttribute.Ints("axes", 1), keep);
        }
        else
        {
            var count = g.Node("ReduceSum", new[] { mask, axis }, keep);
            mean = g.Node("Div", new[] { g.Node("ReduceSum", new[] { g.Node("Mul", new[] { x, mask }), axis }, keep), count });
            centred = g.Node("Mul", new[] { g.Node("Sub", new[] { x, mean }), mask });
            variance = g.Node("Div", new[] { g.Node("ReduceSum", new[] { g.Node("Mul", new[] { centred, centred }), axis }, keep), count });
        }
        return g.Node("Div", new[] { centred, g.Node("Sqrt", new[] { g.Node("Add", new[] { variance, g.Scalar((float)VarianceEpsilon) }) }) });
    }
}

/// <summary>Pools [B, L, H] to [B, H] over the valid steps (mask [B, L, 1] or null): mean, last valid step or attention.</summary>
internal sealed class SequencePool : nn.Module<Tensor, Tensor>
{
    /// <summary>Subtracted from the attention scores of padded steps, (mask − 1)·1e9: their softmax weight underflows to exactly 0.</summary>
    private const float MaskPenalty = 1e9f;
    private readonly Linear? attention;

    public SequencePool(SequencePooling kind, int width) : base(nameof(SequencePool))
    {
        Kind = kind;
        if (kind == SequencePooling.Attention)
            attention = nn.Linear(width, 1);
        RegisterComponents();
    }

    public SequencePooling Kind { get; }

    public override Tensor forward(Tensor input) => forward(input, null);

    public Tensor forward(Tensor h, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var dims = new long[] { 1 };
        Tensor pooled;
        switch (Kind)
        {
            case SequencePooling.LastStep:
                if (mask is null)
                {
                    pooled = h.select(1, -1);
                }
                else
                {
                    // 1 at the step whose running count of valid steps reaches the row's length.
                    var last = mask.cumsum(1).eq(mask.sum(dims, keepdim: true)).to(h.dtype).mul(mask);
                    pooled = h.mul(last).sum(dims);
                }
                break;
            case SequencePooling.Attention:
                var scores = attention!.forward(h);
                if (mask is not null)
                {
                    using var one = 1.ToScalar();
                    using var masked = MaskPenalty.ToScalar();
                    scores = scores.add(mask.sub(one).mul(masked), one);
                }
                pooled = nn.functional.softmax(scores, 1).mul(h).sum(dims);
                break;
            default:
                pooled = mask is null ? h.mean(dims) : h.mul(mask).sum(dims).div(mask.sum(dims));
                break;
        }
        return pooled.MoveToOuterDisposeScope();
    }

    public string ExportOnnx(OnnxGraphBuilder g, string h, string? mask)
    {
        var axis = g.Int64s(1);
        var drop = OnnxAttribute.Int("keepdims", 0);
        switch (Kind)
        {
            case SequencePooling.LastStep:
                if (mask is null)
                    return g.Node("Gather", new[] { h, g.AddInitializer("last_step", new long[] { -1 }) }, OnnxAttribute.Int("axis", 1));
                var last = g.Node("Mul", new[]
                {
                    g.Node("Cast", new[] { g.Node("Equal", new[] { g.Node("CumSum", new[] { mask, g.AddInitializer("cumsum_axis", new long[] { 1 }) }),
                        g.Node("ReduceSum", new[] { mask, axis }, OnnxAttribute.Int("keepdims", 1)) }) }, OnnxAttribute.Int("to", (long)OnnxElementType.Float)),
                    mask,
                });
                return g.Node("ReduceSum", new[] { g.Node("Mul", new[] { h, last }), axis }, drop);
            case SequencePooling.Attention:
                var scores = OnnxModuleExporter.Linear(g, h, attention!.weight, attention.bias);
                if (mask is not null)
                    scores = g.Node("Add", new[] { scores, g.Node("Mul", new[] { g.Node("Sub", new[] { mask, g.Scalar(1f) }), g.Scalar(MaskPenalty) }) });
                var weights = g.Node("Softmax", new[] { scores }, OnnxAttribute.Int("axis", 1));
                return g.Node("ReduceSum", new[] { g.Node("Mul", new[] { weights, h }), axis }, drop);
            default:
                if (mask is null)
                    return g.Node("ReduceMean", new[] { h }, OnnxAttribute.Ints("axes", 1), drop);
                var sum = g.Node("ReduceSum", new[] { g.Node("Mul", new[] { h, mask }), axis }, drop);
                return g.Node("Div", new[] { sum, g.Node("ReduceSum", new[] { mask, axis }, drop) });
        }
    }
}

/// <summary>The training-time augmentations of a sequence network (see <see cref="SequenceTrainer.Options"/>).</summary>
/// <param name="CropFraction">The fraction of each row's valid steps a random crop keeps; 1 keeps the whole row.</param>
/// <param name="Jitter">The standard deviation of Gaussian noise added to every valid value; 0 adds none.</param>
/// <param name="Scaling">The standard deviation of a factor 1 + σ·N(0, 1) drawn per row and channel; 0 scales nothing.</param>
/// <param name="TimeMask">The fraction of each row's valid steps a random contiguous span sets to 0 (all channels); 0 masks nothing.</param>
internal sealed record SequenceAugmentation(double CropFraction, double Jitter, double Scaling, double TimeMask = 0)
{
    public bool IsIdentity => CropFraction >= 1 && Jitter <= 0 && Scaling <= 0 && TimeMask <= 0;
}

/// <summary>
/// Applies <see cref="SequenceAugmentation"/> to a batch in training mode only, with the run's generator; in evaluation it
/// returns its input unchanged.
/// </summary>
internal sealed class SequenceAugmenter : nn.Module<Tensor, Tensor>, ISeededModule
{
    public SequenceAugmenter(SequenceAugmentation augmentation) : base(nameof(SequenceAugmenter)) => Augmentation = augmentation;

    public SequenceAugmentation Augmentation { get; }

    public Generator? Generator { get; set; }

    public void ResetParameters(Generator generator)
    {
    }

    public override Tensor forward(Tensor input) => Augment(input, null).Features;

    /// <summary>
    /// The augmented batch [B, L, C] and its rows' lengths (null when every row has all L steps). A crop of k = max(1,
    /// round(f·n)) of a row's n valid steps starts at a uniform offset in [0, n − k] and is moved to the front; the steps after
    /// it become padding. Then a time mask sets round(m·n) consecutive valid steps (n counted after the crop) to 0, starting
    /// at a uniform offset in [0, n − round(m·n)]; then each row and channel is scaled, then jittered; padded steps stay 0.
    /// </summary>
    public (Tensor Features, Tensor? Lengths) Augment(Tensor x, Tensor? lengths)
    {
        if (!training || Augmentation.IsIdentity)
            return (x.alias(), lengths?.alias());
        using var scope = NewDisposeScope();
        long batch = x.shape[0], steps = x.shape[1], channels = x.shape[2];
        Tensor? cropped = null;
        if (Augmentation.CropFraction < 1)
        {
            using var stepCount = steps.ToScalar();
            var n = lengths ?? full(new long[] { batch }, stepCount, ScalarType.Int64, x.device);
            using var fraction = Augmentation.CropFraction.ToScalar();
            using var oneStep = 1.ToScalar();
            var keep = n.to(ScalarType.Float64).mul(fraction).round().to(ScalarType.Int64).clamp_min(oneStep);
            using var u = rand(new long[] { batch }, ScalarType.Float64, x.device, generator: Generator);
            var start = u.mul(n.sub(keep).add(oneStep, oneStep).to(ScalarType.Float64)).floor().to(ScalarType.Int64);
            using var zero = 0.ToScalar();
            using var stop = steps.ToScalar();
            using var last = (steps - 1).ToScalar();
            var positions = arange(zero, stop, oneStep, ScalarType.Int64, x.device).unsqueeze(0);
            var index = positions.add(start.unsqueeze(1), oneStep).clamp_max(last).unsqueeze(2).expand(batch, steps, channels);
            x = x.gather(1, index);
            cropped = keep;
        }
        var mask = SequenceNetwork.Mask(cropped ?? lengths, steps, x.dtype);
        if (Augmentation.TimeMask > 0)
            x = x.mul(TimeMaskKeep(cropped ?? lengths, batch, steps, x));
        if (Augmentation.Scaling > 0)
        {
            using var sigma = Augmentation.Scaling.ToScalar();
            using var one = 1.ToScalar();
            var factor = randn(new long[] { batch, 1, channels }, x.dtype, x.device, generator: Generator).mul(sigma).add(one, one);
            x = x.mul(factor);
        }
        if (Augmentation.Jitter > 0)
        {
            using var sigma = Augmentation.Jitter.ToScalar();
            using var one = 1.ToScalar();
            x = x.add(randn(x.shape, x.dtype, x.device, generator: Generator).mul(sigma), one);
        }
        if (mask is not null)
            x = x.mul(mask);
        return (x.MoveToOuterDisposeScope(), cropped is null ? lengths : cropped.MoveToOuterDisposeScope());
    }

    /// <summary>A [B, L, 1] tensor of x's type: 0 on each row's masked span of round(m·n) of its n valid steps, 1 elsewhere.</summary>
    private Tensor TimeMaskKeep(Tensor? lengths, long batch, long steps, Tensor x)
    {
        using var stepCount = steps.ToScalar();
        using var one = 1.ToScalar();
        using var zero = 0.ToScalar();
        using var fraction = Augmentation.TimeMask.ToScalar();
        var n = lengths ?? full(new long[] { batch }, stepCount, ScalarType.Int64, x.device);
        var span = n.to(ScalarType.Float64).mul(fraction).round().to(ScalarType.Int64);
        using var u = rand(new long[] { batch }, ScalarType.Float64, x.device, generator: Generator);
        var start = u.mul(n.sub(span).add(one, one).to(ScalarType.Float64)).floor().to(ScalarType.Int64).unsqueeze(1);
        var positions = arange(zero, stepCount, one, ScalarType.Int64, x.device).unsqueeze(0);
        var inside = positions.ge(start).logical_and(positions.lt(start.add(span.unsqueeze(1), one)));
        return inside.logical_not().to(x.dtype).unsqueeze(2);
    }
}
