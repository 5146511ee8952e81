using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Contrastive;

/// <summary>
/// The contrastive loss of "Perfectly Balanced" (Chen et al., ICML 2022), as its reference code computes it for two views:
/// the second view's embeddings are the anchors, the first view's the candidates, and scores are s_ij = cos(z¹ᵢ, z⁰ⱼ)/τ
/// (or dot products over τ without <see cref="Cosine"/>). For anchor i, P(i) = the candidates of its class (its own other
/// view included) and N(i) = the others.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>SupCon, negatives-only denominator: L_SC(i) = (1/|P(i)|) Σ_{p∈P(i)} [−s̃_ip + log(e^{s_ip} + Σ_{n∈N(i)} e^{s_in})],
/// where s̃_ip = min(s_ip, <see cref="ClipPositives"/>) when clipping is set, else s_ip. With <see cref="PositivesInDenominator"/>
/// the log-sum-exp runs over P(i) ∪ N(i), each positive's exponential weighted by <see cref="PositiveDenominatorWeight"/>.</item>
/// <item>Class-conditional InfoNCE (cNCE, "spread"): L_cNCE(i) = −s_ii + log Σ_{p∈P(i)} e^{s_ip}.</item>
/// <item>The loss: mean over anchors of (a_lc·L_SC(i) + a_spread·L_cNCE(i)) / (a_lc + a_spread), with a_lc =
/// <see cref="SupConWeight"/> and a_spread = <see cref="SpreadWeight"/>.</item>
/// </list>
/// A batch of one class has no negatives: every SupCon term is −s̃_ip + s_ip (0 without clipping), never NaN.
/// The presets are <see cref="SupCon"/>, <see cref="Spread"/>, <see cref="SimClr"/> and <see cref="ClassConditionalNce"/>;
/// <see cref="FromReference"/> reproduces the reference's <c>clip_pos</c> setting, whose branch is inverted.
/// </remarks>
public sealed class ContrastiveLoss
{
    /// <summary>τ, the temperature the scores are divided by: 0.5 by default, as the reference's configuration.</summary>
    public double Temperature { get; init; } = 0.5;

    /// <summary>Score with cosine similarity (the reference's <c>lc_norm</c>, default true); false scores with dot products.</summary>
    public bool Cosine { get; init; } = true;

    /// <summary>a_lc, the weight of the SupCon term.</summary>
    public double SupConWeight { get; init; } = 1.0;

    /// <summary>a_spread, the weight of the class-conditional InfoNCE term; α = a_spread / (a_lc + a_spread).</summary>
    public double SpreadWeight { get; init; }

    /// <summary>Ignore the labels: each anchor's only positive is its own other view (SimCLR).</summary>
    public bool IgnoreLabels { get; init; }

    /// <summary>Put the positives into SupCon's log-sum-exp too (the reference's <c>pos_in_denom</c>, default false).</summary>
    public bool PositivesInDenominator { get; init; }

    /// <summary>With <see cref="PositivesInDenominator"/>, the weight of each positive's exponential in the denominator (<c>pos_in_denom_weight</c>).</summary>
    public double PositiveDenominatorWeight { get; init; } = 1.0;

    /// <summary>
    /// When set, SupCon's numerator uses min(s_ip, value) (in score units, i.e. after dividing by τ); the log-sum-exp keeps
    /// the unclipped score. Null (the default) does not clip. See <see cref="FromReference"/> for the reference's behaviour.
    /// </summary>
    public double? ClipPositives { get; init; }

    /// <summary>SupCon (a_spread = 0).</summary>
    public static ContrastiveLoss SupCon() => new();

    /// <summary>SupCon + cNCE, "L_spread": a_lc = 1 − <paramref name="alpha"/>, a_spread = <paramref name="alpha"/> (the reference configures α = 0.5).</summary>
    /// <param name="alpha">The weight of cNCE in the mix, in (0, 1).</param>
    public static ContrastiveLoss Spread(double alpha = 0.5)
    {
        if (!(alpha > 0 && alpha < 1))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must lie in (0, 1).");
        return new() { SupConWeight = 1 - alpha, SpreadWeight = alpha };
    }

    /// <summary>SimCLR: labels ignored, the other view is the only positive, every other candidate a negative.</summary>
    public static ContrastiveLoss SimClr() => new() { IgnoreLabels = true };

    /// <summary>Class-conditional InfoNCE alone (a_lc = 0; the reference's <c>l_repel</c>).</summary>
    public static ContrastiveLoss ClassConditionalNce() => new() { SupConWeight = 0, SpreadWeight = 1 };

    /// <summary>
    /// Compatibility with the reference implementation (<c>thanos-code</c>'s <c>ContrastiveLoss</c>): its <c>type</c>
    /// (<c>sup_con</c>, <c>l_spread</c>, <c>l_repel</c>, <c>sim_clr</c>) and its <c>clip_pos</c>, whose branch is inverted:
    /// the default <c>clip_pos = 1.0</c> clips positive scores at 1.0 and any other value disables clipping.
    /// </summary>
    /// <param name="type">The reference's loss type.</param>
    /// <param name="clipPos">The reference's <c>clip_pos</c> (1.0 by default there).</param>
    public static ContrastiveLoss FromReference(string type, double clipPos = 1.0)
    {
        var preset = type switch
        {
            "sup_con" => SupCon(),
            "l_spread" => new ContrastiveLoss { SupConWeight = 1, SpreadWeight = 1 },
            "l_repel" => ClassConditionalNce(),
            "sim_clr" => SimClr(),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Expected sup_con, l_spread, l_repel or sim_clr."),
        };
#pragma warning disable S1244 // the reference compares the float exactly
        return preset.With(clipPos == 1.0 ? 1.0 : null);
#pragma warning restore S1244
    }

    private ContrastiveLoss With(double? clip) => new()
    {
        Temperature = Temperature, Cosine = Cosine, SupConWeight = SupConWeight, SpreadWeight = SpreadWeight, IgnoreLabels = IgnoreLabels,
        PositivesInDenominator = PositivesInDenominator, PositiveDenominatorWeight = PositiveDenominatorWeight, ClipPositives = clip,
    };

    /// <summary>Checks the settings; throws naming the one out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range.</exception>
    public void Check()
    {
        if (!(Temperature > 0) || double.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "The temperature must be positive and finite.");
        if (!(SupConWeight >= 0) || !(SpreadWeight >= 0) || !(SupConWeight + SpreadWeight > 0))
            throw new ArgumentOutOfRangeException(nameof(SupConWeight), $"SupConWeight ({SupConWeight}) and SpreadWeight ({SpreadWeight}) must be non-negative with a positive sum.");
        if (!(PositiveDenominatorWeight > 0))
            throw new ArgumentOutOfRangeException(nameof(PositiveDenominatorWeight), PositiveDenominatorWeight, "must be positive");
        if (ClipPositives is double c && double.IsNaN(c))
            throw new ArgumentOutOfRangeException(nameof(ClipPositives), c, "must be a number or null");
    }

    /// <summary>
    /// The loss of one batch: <paramref name="candidates"/> (view 0) and <paramref name="anchors"/> (view 1), both [B, D] with
    /// row i the two views of sample i, and the class of each sample (int64 [B]; ignored with <see cref="IgnoreLabels"/>).
    /// </summary>
    internal Tensor Compute(Tensor candidates, Tensor anchors, Tensor? labels)
    {
        using var scope = NewDisposeScope();
        long b = anchors.shape[0];
        var z1 = Cosine ? nn.functional.normalize(anchors, p: 2, dim: 1, eps: 1e-12) : anchors;
        var z0 = Cosine ? nn.functional.normalize(candidates, p: 2, dim: 1, eps: 1e-12) : candidates;
        using var inverseTemperature = (1.0 / Temperature).ToScalar();
        var s = z1.matmul(z0.t()).mul(inverseTemperature);

        Tensor positive;
        if (IgnoreLabels || labels is null)
            positive = eye(b, dtype: s.dtype, device: s.device);
        else
            positive = labels.reshape(-1, 1).eq(labels.reshape(1, -1)).to_type(s.dtype);
        using var oneScalar = 1.ToScalar();
        var negative = positive.neg().add(oneScalar, oneScalar);
        // Every exponential is taken relative to the row's largest score, so no sum over- or underflows to 0 or ∞.
        var rowMax = s.detach().amax(new long[] { 1 }, keepdim: true);
        var shifted = s.sub(rowMax);
        var e = shifted.exp();
        var negatives = e.mul(negative).sum(1, keepdim: true);
        var positiveCount = positive.sum(1);

        Tensor total = zeros(b, dtype: s.dtype, device: s.device);
        if (SupConWeight > 0)
        {
            Tensor logDenominator;
            if (PositivesInDenominator)
            {
                using var w = PositiveDenominatorWeight.ToScalar();
                logDenominator = e.mul(positive).sum(1, keepdim: true).mul(w).add(negatives, oneScalar).log().add(rowMax, oneScalar);
            }
            else
            {
                logDenominator = e.add(negatives, oneScalar).log().add(rowMax, oneScalar);
            }
            Tensor numerator = s;
            if (ClipPositives is double clip)
            {
                using var limit = clip.ToScalar();
                numerator = s.clamp_max(limit);
            }
            var terms = logDenominator.sub(numerator).mul(positive).sum(1).div(positiveCount);
            using var a = (SupConWeight / (SupConWeight + SpreadWeight)).ToScalar();
            total = total.add(terms, a);
        }
        if (SpreadWeight > 0)
        {
            var own = s.diagonal();
            var cnce = e.mul(positive).sum(1).log().add(rowMax.squeeze(1), oneScalar).sub(own);
            using var a = (SpreadWeight / (SupConWeight + SpreadWeight)).ToScalar();
            total = total.add(cnce, a);
        }
        return total.mean().MoveToOuterDisposeScope();
    }
}
