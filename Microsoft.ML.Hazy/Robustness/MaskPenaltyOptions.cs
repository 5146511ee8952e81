using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Robustness;

/// <summary>The mask-guided penalties (Viviano et al., ICLR 2021; Parmar et al., ICML 2022 SCIS workshop).</summary>
public enum MaskPenaltyKind
{
    /// <summary>
    /// GradMask: λ · Σ |∂s/∂x ⊙ (1 − M)| over the batch and the input values, where s = Σ_rows Σ_{c&lt;k} |f_c − f_k| of the
    /// logits (|f₀ − f₁| with two classes, as the reference; |f| for a single output such as the binary logit).
    /// </summary>
    GradMask,

    /// <summary>
    /// RRR ("right for the right reasons", Ross et al. 2017): λ · Σ (∂s/∂x ⊙ (1 − M))², where s sums the log-probabilities of
    /// every class over the batch (for the binary logit z: log σ(z) + log σ(−z)). Classification only.
    /// </summary>
    Rrr,

    /// <summary>
    /// ActDiff: λ · mean over the compared layers and the batch of ‖a(x) − a(x̃)‖₂, where x̃ is x with the values outside the
    /// mask permuted at random within each row (no gradient flows through x̃'s construction).
    /// </summary>
    ActDiff,
}

/// <summary>
/// A mask-guided training penalty for any Hazy trainer (set as <see cref="HazyTrainerOptions.Penalty"/>): it discourages the
/// network from using the input values outside a per-row mask of the relevant region.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input columns (training only)
/// | Column | Type | Meaning |
/// | -- | -- | -- |
/// | `MaskColumnName` | known-size vector of Single (in [0, 1]) or Boolean, as many values as the features | 1 (true) inside the relevant region; the penalty acts on 1 − M, outside it |
/// | `HasMaskColumnName` (optional) | Boolean, or Single 0/1 | false (0) for a row without a mask: that row gets no penalty |
///
/// A row's mask lines up with its feature vector value for value (an image's pixels in the same order; a sequence's steps and
/// channels). The penalties act only while the network trains: validation, scoring, saving and loading never read the mask,
/// and the trained model is an ordinary model of its trainer. With a mask covering the whole input (M ≡ 1), or no row with a
/// mask in a batch, the batch trains exactly as without a penalty.
///
/// The gradient penalties follow the public reference (`saliency-red-herring`): they are sums over the batch and the input
/// values (not means), so λ depends on the batch size as there; the reference's tuned values at batch size 16 are the
/// defaults. ActDiff is a mean over the batch weighted by λ; the reference adds it unweighted (its λ only switches the term
/// on), which <see cref="ReferenceActDiffWeight"/> reproduces. RRR uses the exact log-softmax where the reference adds
/// 1e-11 inside the log.
/// ]]></format>
/// </remarks>
public sealed class MaskPenaltyOptions : TrainingPenaltyOptions
{
    /// <summary>The defaults of the mask penalties.</summary>
    public static class Defaults
    {
        /// <summary>The penalty: GradMask.</summary>
        public const MaskPenaltyKind Kind = MaskPenaltyKind.GradMask;

        /// <summary>The mask column: <c>Mask</c>.</summary>
        public const string MaskColumnName = "Mask";

        /// <summary>GradMask's λ: 0.385 (the reference's tuned value on its X-ray benchmark, batch size 16).</summary>
        public const double GradMaskWeight = 0.385;

        /// <summary>RRR's λ: 7.74 (the reference's tuned value, batch size 16).</summary>
        public const double RrrWeight = 7.74;

        /// <summary>ActDiff's λ: 1 (the reference's effective weight).</summary>
        public const double ActDiffWeight = 1.0;

        /// <summary>The default λ of <paramref name="kind"/>.</summary>
        public static double WeightOf(MaskPenaltyKind kind) => kind switch
        {
            MaskPenaltyKind.Rrr => RrrWeight,
            MaskPenaltyKind.ActDiff => ActDiffWeight,
            _ => GradMaskWeight,
        };
    }

    /// <summary>The penalty.</summary>
    public MaskPenaltyKind Kind { get; set; } = Defaults.Kind;

    /// <summary>The column holding each row's mask of the relevant region (1 or true inside).</summary>
    public string MaskColumnName { get; set; } = Defaults.MaskColumnName;

    /// <summary>
    /// An optional Boolean (or Single 0/1) column telling which rows have a mask; rows where it is false get no penalty
    /// (their mask column's values are not used). Null: every row has a mask.
    /// </summary>
    public string? HasMaskColumnName { get; set; }

    /// <summary>λ, the penalty's weight; null uses the kind's default (<see cref="Defaults.WeightOf"/>). 0 switches the penalty off.</summary>
    public double? Weight { get; set; }

    /// <summary>
    /// ActDiff only: the layers whose outputs are compared, as indices into the network's layers in forward order (a CNN's
    /// unflatten, convolution, norm, activation, dropout, flatten and head modules; an MLP's linear, activation and dropout
    /// modules). Empty (the default): the features the network's last layer reads (the pooled features of a sequence network,
    /// the flattened last feature map of the CNN, the last hidden layer of the MLP), the only choice for a sequence network.
    /// </summary>
    public int[] ActivationLayers { get; set; } = [];

    /// <summary>
    /// ActDiff only, compatibility with the reference implementation: the term is added with weight 1 whenever λ &gt; 0
    /// (its <c>actdiff_lamb</c> only switches it on). False (the default) multiplies it by λ.
    /// </summary>
    public bool ReferenceActDiffWeight { get; set; }

    /// <summary>
    /// ActDiff only: λ_disc, the weight of the adversarial ("disc") variant's term; 0 (the default) leaves it off. A small
    /// discriminator (an MLP of 64 ReLU units over the compared activations, flattened) learns to tell the activations of x
    /// from those of x̃ (x with the values outside the mask shuffled) with binary cross-entropy, one Adam step of its own per
    /// training step; the network is trained to fool it with λ_disc × the cross-entropy of the swapped labels. The term is added
    /// to ActDiff's distance term, which λ still weights (set λ = 0 for the adversarial term alone).
    /// </summary>
    public double AdversarialWeight { get; set; }

    /// <summary>ActDiff's adversarial variant only: the discriminator's Adam learning rate. Default 1e-3.</summary>
    public double DiscriminatorLearningRate { get; set; } = 1e-3;

    /// <summary>The λ in effect.</summary>
    internal double EffectiveWeight => Weight ?? Defaults.WeightOf(Kind);

    internal override void Check()
    {
        if (!Enum.IsDefined(Kind))
            throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "Options.Penalty.Kind is not a MaskPenaltyKind.");
        if (string.IsNullOrWhiteSpace(MaskColumnName))
            throw new ArgumentOutOfRangeException(nameof(MaskColumnName), MaskColumnName, "Options.Penalty.MaskColumnName must name a column.");
        if (HasMaskColumnName is not null && string.IsNullOrWhiteSpace(HasMaskColumnName))
            throw new ArgumentOutOfRangeException(nameof(HasMaskColumnName), HasMaskColumnName, "Options.Penalty.HasMaskColumnName must be null or name a column.");
        if (Weight is double w && !(w >= 0 && double.IsFinite(w)))
            throw new ArgumentOutOfRangeException(nameof(Weight), w, "Options.Penalty.Weight must be null or a non-negative number.");
        if (ActivationLayers is null || ActivationLayers.Any(i => i < 0))
            throw new ArgumentOutOfRangeException(nameof(ActivationLayers), ActivationLayers is null ? null : $"[{string.Join(", ", ActivationLayers)}]",
                "Options.Penalty.ActivationLayers must list non-negative layer indices (empty: the features the last layer reads).");
        if (!(AdversarialWeight >= 0 && double.IsFinite(AdversarialWeight)))
            throw new ArgumentOutOfRangeException(nameof(AdversarialWeight), AdversarialWeight, "Options.Penalty.AdversarialWeight must be a non-negative number.");
        if (AdversarialWeight > 0 && Kind != MaskPenaltyKind.ActDiff)
            throw new ArgumentOutOfRangeException(nameof(AdversarialWeight), AdversarialWeight, $"Options.Penalty.AdversarialWeight applies to ActDiff only; the penalty is {Kind}.");
        if (!(DiscriminatorLearningRate > 0 && double.IsFinite(DiscriminatorLearningRate)))
            throw new ArgumentOutOfRangeException(nameof(DiscriminatorLearningRate), DiscriminatorLearningRate, "Options.Penalty.DiscriminatorLearningRate must be a positive number.");
        if (ActivationLayers.Length > 0 && Kind != MaskPenaltyKind.ActDiff)
            throw new ArgumentOutOfRangeException(nameof(ActivationLayers), $"[{string.Join(", ", ActivationLayers)}]",
                $"Options.Penalty.ActivationLayers applies to ActDiff only; the penalty is {Kind}.");
    }

    /// <summary>The batch column the mask is read into.</summary>
    internal const string MaskBatchColumn = "Robustness.Mask";

    /// <summary>The batch column the has-mask flag is read into.</summary>
    internal const string HasMaskBatchColumn = "Robustness.HasMask";

    internal override (ITrainingObjective Objective, IReadOnlyList<BatchColumn> Columns) CreateObjective(
        ITrainingObjective supervised, OutputHead head, DataViewSchema schema, string featureColumn, int featureSize, int channels)
    {
        Check();
        if (Kind == MaskPenaltyKind.Rrr && head.Kind is not (PredictionKind.MulticlassClassification or PredictionKind.BinaryClassification))
            throw new ArgumentOutOfRangeException(nameof(Kind), Kind, $"RRR penalises the gradient of the log-probabilities, so it needs a classification head; this trainer's is {head.Kind}.");
        string expected = featureSize > 0
            ? $"a vector of {featureSize} Single or Boolean, as many values as column '{featureColumn}'"
            : $"a vector of Single or Boolean with as many values as column '{featureColumn}' in each row";
        var mask = schema.GetColumnOrNull(MaskColumnName)
            ?? throw new ArgumentOutOfRangeException(nameof(MaskColumnName), $"Column '{MaskColumnName}' (the mask) not found; expected {expected}.");
        if (mask.Type is not VectorDataViewType vector || (vector.ItemType != NumberDataViewType.Single && vector.ItemType != BooleanDataViewType.Instance)
            || vector.Size != featureSize)
            throw new ArgumentOutOfRangeException(nameof(MaskColumnName), $"Column '{MaskColumnName}' (the mask) has type {mask.Type}; expected {expected}.");
        var columns = new List<BatchColumn> { new(MaskBatchColumn, MaskColumnName, BatchColumnKind.Vector, channels, PaddingValue: 1f) };
        if (HasMaskColumnName is { } hasName)
        {
            var has = schema.GetColumnOrNull(hasName)
                ?? throw new ArgumentOutOfRangeException(nameof(HasMaskColumnName), $"Column '{hasName}' (which rows have a mask) not found; expected Boolean or Single.");
            if (has.Type != BooleanDataViewType.Instance && has.Type != NumberDataViewType.Single)
                throw new ArgumentOutOfRangeException(nameof(HasMaskColumnName), $"Column '{hasName}' (which rows have a mask) has type {has.Type}; expected Boolean or Single.");
            columns.Add(new BatchColumn(HasMaskBatchColumn, hasName, BatchColumnKind.Scalar));
        }
        return (new MaskPenaltyObjective(this, supervised, head), columns);
    }
}
