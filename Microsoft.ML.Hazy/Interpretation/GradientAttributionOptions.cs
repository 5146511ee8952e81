using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>Attribution methods that need the model's gradients (Hazy's TorchSharp networks).</summary>
public enum GradientMethod
{
    /// <summary>|∂f_c/∂x| (Captum <c>Saliency</c>, the paper's "Gradient"); signed with <see cref="GradientAttributionOptions.Signed"/>.</summary>
    Gradient,

    /// <summary>Mean of the gradient over noisy copies x + N(0, σ²) (absolute by default, as the paper).</summary>
    SmoothGrad,

    /// <summary>x ⊙ ∂f_c/∂x.</summary>
    InputXGradient,

    /// <summary>(x − x′) ⊙ ∫₀¹ ∂f_c(x′ + α(x − x′))/∂x dα, averaged over the baselines.</summary>
    IntegratedGradients,

    /// <summary>DeepLift with the rescale rule, (x − x′) ⊙ multipliers, averaged over the baselines. Needs a layered network.</summary>
    DeepLift,

    /// <summary>DeepLift averaged over a set of baseline rows drawn from the data given to <c>Fit</c>. Needs a layered network.</summary>
    DeepLiftShap,

    /// <summary>Backward through each ReLU only where its input and the incoming gradient are positive. Needs a layered network.</summary>
    GuidedBackprop,

    /// <summary>Guided Backprop ⊙ the nearest-upsampled ReLU(Grad-CAM) of the last convolution. Needs a convolutional layered network.</summary>
    GuidedGradCam,

    /// <summary>Layer-wise relevance propagation from the one-hot target (Zennit): ε rule for linear layers, γ rule for convolutions, batch norm merged. Needs a layered network.</summary>
    Lrp,
}

/// <summary>How the integral of Integrated Gradients is approximated.</summary>
public enum IntegrationRule
{
    /// <summary>Gauss–Legendre nodes and weights on [0, 1] (Captum's default).</summary>
    GaussLegendre,
    /// <summary>α = i/n, i = 0 … n−1.</summary>
    RiemannLeft,
    /// <summary>α = i/n, i = 1 … n.</summary>
    RiemannRight,
    /// <summary>α = (i + ½)/n.</summary>
    RiemannMiddle,
    /// <summary>α = i/(n−1), i = 0 … n−1, with halved end weights.</summary>
    RiemannTrapezoid,
}

/// <summary>A reference input x′ for Integrated Gradients and DeepLift.</summary>
public enum BaselineKind
{
    /// <summary>All zeros.</summary>
    Zero,
    /// <summary>The mean feature row of the data given to <c>Fit</c>.</summary>
    DataMean,
    /// <summary>The rows in <see cref="GradientAttributionOptions.UserBaselines"/>.</summary>
    UserSupplied,
}

/// <summary>Options of the gradient-based attribution methods. The defaults are the paper's calls (Captum and Zennit).</summary>
public sealed class GradientAttributionOptions
{
    /// <summary>The method.</summary>
    public GradientMethod Method { get; set; } = GradientMethod.IntegratedGradients;

    /// <summary>Which output is explained.</summary>
    public AttributionTarget Target { get; set; } = AttributionTarget.TrueLabel;

    /// <summary>The class index for <see cref="AttributionTarget.FixedClass"/>.</summary>
    public int TargetClass { get; set; }

    /// <summary>The feature column.</summary>
    public string FeatureColumnName { get; set; } = DefaultColumnNames.Features;

    /// <summary>The label column (a key) for <see cref="AttributionTarget.TrueLabel"/>.</summary>
    public string LabelColumnName { get; set; } = DefaultColumnNames.Label;

    /// <summary>The predicted-label column (a key) for <see cref="AttributionTarget.PredictedLabel"/>.</summary>
    public string PredictedLabelColumnName { get; set; } = DefaultColumnNames.PredictedLabel;

    /// <summary>The output column of attributions.</summary>
    public string OutputColumnName { get; set; } = "Attribution";

    /// <summary>Keep the gradient's sign for <see cref="GradientMethod.Gradient"/> and <see cref="GradientMethod.SmoothGrad"/> (the paper takes the absolute value).</summary>
    public bool Signed { get; set; }

    /// <summary>Noisy copies per row for SmoothGrad (the paper: 50).</summary>
    public int SmoothGradSamples { get; set; } = 50;

    /// <summary>Standard deviation of SmoothGrad's noise, in the features' units (absolute, as Captum's <c>stdevs</c>; the paper: 1.0).</summary>
    public double SmoothGradSigma { get; set; } = 1.0;

    /// <summary>Integration steps of Integrated Gradients (the paper: 50).</summary>
    public int Steps { get; set; } = 50;

    /// <summary>The integration rule of Integrated Gradients.</summary>
    public IntegrationRule Rule { get; set; } = IntegrationRule.GaussLegendre;

    /// <summary>Baselines of Integrated Gradients and DeepLift; the attribution is the mean over them (the paper: zeros and the data mean).</summary>
    public BaselineKind[] Baselines { get; set; } = { BaselineKind.Zero, BaselineKind.DataMean };

    /// <summary>Baseline rows for <see cref="BaselineKind.UserSupplied"/>, each of the feature column's size.</summary>
    public float[][]? UserBaselines { get; set; }

    /// <summary>Baseline rows DeepLiftShap draws from the data given to <c>Fit</c> (the paper: 50 test images).</summary>
    public int DeepLiftShapBaselines { get; set; } = 50;

    /// <summary>ε of the LRP rule for linear layers (the paper: 0, i.e. LRP-0; a 1e-12 stabiliser keeps 0/0 finite).</summary>
    public double LrpEpsilon { get; set; }

    /// <summary>γ of the LRP rule for convolutions (the paper: 0.25).</summary>
    public double LrpGamma { get; set; } = 0.25;

    /// <summary>
    /// Seed LRP with the target's output f_c(x) instead of 1 (false, Zennit's one-hot seed as the paper called it). The
    /// relevance is then conserved as Σ R = f_c(x) (up to what biases absorb), as in Bach et al. (2015), and LRP-0 on a
    /// bias-free ReLU network equals InputXGradient; every map is the default one times f_c(x), so its sign flips on rows
    /// whose target output is negative.
    /// </summary>
    public bool LrpScaleByOutput { get; set; }

    /// <summary>
    /// Where Guided Grad-CAM reads its activations: false (the paper's call, Captum's <c>LayerGradCam</c> on the last
    /// convolution) takes the convolution's own output, before batch norm and ReLU; true takes the output of the first
    /// activation after it, the rectified feature maps of Selvaraju et al. With batch norm between them the
    /// convolution's raw output can make ReLU(Σ α_k A^k) zero everywhere for some images.
    /// </summary>
    public bool GradCamAfterActivation { get; set; }

    /// <summary>Rows per forward/backward pass.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>Seed of SmoothGrad's noise and DeepLiftShap's baseline draw; null takes the MLContext's.</summary>
    public int? Seed { get; set; }
}
