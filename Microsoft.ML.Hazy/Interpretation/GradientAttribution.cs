using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Gradient-based attribution on a TorchSharp network: Gradient, SmoothGrad, InputXGradient and Integrated
/// Gradients on any differentiable network; DeepLift, DeepLiftShap, Guided Backprop, Guided Grad-CAM and LRP
/// on a layered one (a Hazy MLP or CNN, or a <c>Sequential</c>), whose layers it walks with each method's rules.
/// The explained output f_c is the network's raw output (a logit, no softmax), as in the paper.
/// </summary>
/// <remarks>
/// LRP seeds the backward pass with the one-hot vector of the target, as Zennit (which the paper used) does, so the
/// relevance starts at 1 and LRP-0 on a bias-free ReLU network equals InputXGradient / f_c(x). Seeding with f_c(x)
/// instead (<see cref="GradientAttributionOptions.LrpScaleByOutput"/>) multiplies every map by f_c(x): the sign of each
/// map then flips on rows whose target logit is negative, which reverses their top-φ rankings in a faithfulness check.
/// </remarks>
public sealed class GradientAttribution : IAttributionMethod
{
    private const double DeepLiftTolerance = 1e-10;

    private readonly nn.Module<Tensor, Tensor> _network;
    private readonly Func<Tensor, Tensor> _forward;
    private readonly IReadOnlyList<nn.Module<Tensor, Tensor>>? _layers;
    private readonly GradientAttributionOptions _options;
    private readonly float[][] _baselines;
    private readonly Generator _generator;
    private readonly Device _device;

    /// <summary>Attribution on a TorchSharp network that reads [batch, <paramref name="featureSize"/>] rows.</summary>
    /// <param name="network">The network; it is put in evaluation mode.</param>
    /// <param name="featureSize">Values per row.</param>
    /// <param name="options">The method and its settings.</param>
    /// <param name="baselines">
    /// Reference rows: the baselines Integrated Gradients and DeepLift average over, or DeepLiftShap's baseline set.
    /// Null means one all-zero row.
    /// </param>
    /// <param name="seed">Seed of SmoothGrad's noise.</param>
    public GradientAttribution(nn.Module<Tensor, Tensor> network, int featureSize, GradientAttributionOptions options, IReadOnlyList<float[]>? baselines = null, int seed = 0)
        : this(network, featureSize, options, baselines, seed, null)
    {
    }

    internal GradientAttribution(nn.Module<Tensor, Tensor> network, int featureSize, GradientAttributionOptions options, IReadOnlyList<float[]>? baselines, int seed,
        Func<Tensor, Tensor>? forward)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureSize);
        Validate(options);
        TorchRuntime.EnsureInitialized();
        _network = network;
        _options = options;
        FeatureSize = featureSize;
        _forward = forward ?? network.forward;
        _layers = LayersOf(network);
        if (NeedsLayers(options.Method) && _layers is null)
            throw new NotSupportedException(
                $"{options.Method} walks the network layer by layer, and {network.GetType().Name} is not a chain of layers (a Hazy MLP or CNN, or a TorchSharp Sequential). " +
                "Use Gradient, SmoothGrad, InputXGradient or IntegratedGradients, or a model-agnostic method (Occlusion, KernelSHAP).");
        if (_layers is not null && NeedsLayers(options.Method))
            CheckLayers(_layers, options.Method);
        _baselines = (baselines ?? new[] { new float[featureSize] }).ToArray();
        if (_baselines.Length == 0)
            throw new ArgumentException("At least one baseline row is needed.", nameof(baselines));
        foreach (var b in _baselines)
        {
            if (b is null || b.Length != featureSize)
                throw new ArgumentException($"Each baseline row must have {featureSize} values (the feature size); found {b?.Length ?? 0}.", nameof(baselines));
        }
        _device = network.parameters().FirstOrDefault()?.device ?? CPU;
        _generator = new Generator((ulong)seed, _device);
        network.eval();
        using (no_grad())
        using (var probe = zeros(1, featureSize, device: _device))
        using (var output = _forward(probe))
        {
            if (output.dim() != 2)
                throw new NotSupportedException($"The network returns a tensor of shape [{string.Join(", ", output.shape)}]; attribution needs [batch, outputs].");
            OutputCount = (int)output.shape[1];
        }
    }

    /// <inheritdoc/>
    public string Name => _options.Method.ToString();

    /// <inheritdoc/>
    public int FeatureSize { get; }

    /// <summary>The network's outputs per row (classes, or 1).</summary>
    public int OutputCount { get; }

    /// <summary>The options this method runs with.</summary>
    public GradientAttributionOptions Options => _options;

    /// <inheritdoc/>
    public float[] Attribute(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets)
    {
        AttributionChecks.Rows(features.Length, count, FeatureSize, nameof(features));
        AttributionChecks.Targets(targets, count, OutputCount, nameof(targets));
        var result = new float[count * FeatureSize];
        int batch = Math.Max(1, _options.BatchSize);
        for (int start = 0; start < count; start += batch)
        {
            int n = Math.Min(batch, count - start);
            using var scope = NewDisposeScope();
            var x = tensor(features.Slice(start * FeatureSize, n * FeatureSize).ToArray(), new long[] { n, FeatureSize }, device: _device);
            var t = tensor(targets.Slice(start, n).ToArray().Select(v => (long)v).ToArray(), device: _device);
            var a = AttributeBatch(x, t).to(ScalarType.Float32).cpu().contiguous();
            a.data<float>().CopyTo(result.AsSpan(start * FeatureSize, n * FeatureSize));
        }
        return result;
    }

    /// <summary>
    /// The model-randomisation sanity check (Adebayo et al. 2018): the same attribution with every weight of the
    /// network redrawn from its default initialisation (Kaiming-uniform weights, uniform biases, unit norm scales),
    /// as an untrained model of the same architecture would have. The trained weights are restored afterwards.
    /// Attributions that barely change under this do not explain what the model learned.
    /// </summary>
    /// <param name="features">Rows, row-major.</param>
    /// <param name="count">Number of rows.</param>
    /// <param name="targets">The explained output of each row.</param>
    /// <param name="seed">Seed of the random weights.</param>
    public float[] AttributeWithRandomWeights(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets, int seed)
    {
        var rows = features.ToArray();
        var t = targets.ToArray();
        return ModelRandomization.WithRandomWeights(_network, seed, () => Attribute(rows, count, t));
    }

    private Tensor AttributeBatch(Tensor x, Tensor t) => _options.Method switch
    {
        GradientMethod.Gradient => _options.Signed ? Gradient(x, t) : Gradient(x, t).abs(),
        GradientMethod.SmoothGrad => SmoothGrad(x, t),
        GradientMethod.InputXGradient => x * Gradient(x, t),
        GradientMethod.IntegratedGradients => MeanOverBaselines(x, b => IntegratedGradients(x, t, b)),
        GradientMethod.DeepLift or GradientMethod.DeepLiftShap => DeepLift(x, t),
        GradientMethod.GuidedBackprop => Walk(x, t, Rule.Guided, null).InputGradient,
        GradientMethod.GuidedGradCam => GuidedGradCam(x, t),
        GradientMethod.Lrp => Walk(x, t, Rule.Lrp, null).InputGradient,
        _ => throw new NotSupportedException(_options.Method.ToString()),
    };

    /// <summary>∂f_t/∂x by autograd, for any differentiable network.</summary>
    private Tensor Gradient(Tensor x, Tensor t)
    {
        using var _ = enable_grad();
        var input = x.detach().requires_grad_(true);
        var selected = _forward(input).gather(1, t.unsqueeze(1)).sum();
        return autograd.grad(new[] { selected }, new[] { input })[0];
    }

    /// <summary>The mean gradient over noisy copies, all copies of a batch in one pass.</summary>
    private Tensor SmoothGrad(Tensor x, Tensor t)
    {
        int samples = _options.SmoothGradSamples;
        long n = x.shape[0];
        using var sigma = _options.SmoothGradSigma.ToScalar();
        var noise = randn(new long[] { samples, n, FeatureSize }, generator: _generator, device: _device).mul_(sigma);
        using var one = 1.ToScalar();
        var noisy = x.unsqueeze(0).add(noise, one).reshape(samples * n, FeatureSize);
        var g = Gradient(noisy, t.repeat(samples));
        if (!_options.Signed)
            g = g.abs();
        return g.reshape(samples, n, FeatureSize).mean(new long[] { 0 });
    }

    /// <summary>(x − x′) ⊙ Σ_i w_i ∂f_t(x′ + α_i(x − x′))/∂x, all steps in one pass.</summary>
    private Tensor IntegratedGradients(Tensor x, Tensor t, Tensor baseline)
    {
        var (alphas, weights) = Quadrature.Nodes(_options.Rule, _options.Steps);
        long n = x.shape[0];
        int steps = alphas.Length;
        var delta = x - baseline;
        var a = tensor(alphas.Select(v => (float)v).ToArray(), device: _device).view(steps, 1, 1);
        var w = tensor(weights.Select(v => (float)v).ToArray(), device: _device).view(steps, 1, 1);
        using var one = 1.ToScalar();
        var path = baseline.unsqueeze(0).add(a * delta.unsqueeze(0), one).reshape(steps * n, FeatureSize);
        var g = Gradient(path, t.repeat(steps)).reshape(steps, n, FeatureSize);
        return delta * (g * w).sum(new long[] { 0 });
    }

    /// <summary>
    /// DeepLift averaged over the baselines: the batch is repeated once per baseline so several baselines share one
    /// layer walk (up to about 512 rows a walk, which measured fastest on the CNN).
    /// </summary>
    private Tensor DeepLift(Tensor x, Tensor t)
    {
        long n = x.shape[0];
        int perWalk = (int)Math.Clamp(512 / Math.Max(1, n), 1, _baselines.Length);
        Tensor? sum = null;
        using var one = 1.ToScalar();
        for (int start = 0; start < _baselines.Length; start += perWalk)
        {
            int count = Math.Min(perWalk, _baselines.Length - start);
            var rows = _baselines.Skip(start).Take(count).SelectMany(r => r).ToArray();
            // Baseline g for every row of the batch: [count, 1, D] → [count·n, D], aligned with x repeated count times.
            var b = tensor(rows, new long[] { count, 1, FeatureSize }, device: _device).expand(count, n, FeatureSize).reshape(count * n, FeatureSize);
            var xs = x.repeat(count, 1);
            var a = ((xs - b) * Walk(xs, t.repeat(count), Rule.DeepLift, b).InputGradient).view(count, n, FeatureSize).sum(new long[] { 0 });
            sum = sum is null ? a : sum.add(a, one);
        }
        using var total = ((double)_baselines.Length).ToScalar();
        return sum!.div(total);
    }

    private Tensor MeanOverBaselines(Tensor x, Func<Tensor, Tensor> attribution)
    {
        Tensor? sum = null;
        using var one = 1.ToScalar();
        foreach (var row in _baselines)
        {
            var b = tensor(row, new long[] { 1, FeatureSize }, device: _device);
            var a = attribution(b);
            sum = sum is null ? a : sum.add(a, one);
        }
        using var count = ((double)_baselines.Length).ToScalar();
        return sum!.div(count);
    }

    /// <summary>Guided Backprop ⊙ upsampled ReLU(Σ_k α_k A^k), α_k the spatial mean of ∂f_t/∂A^k at the last convolution.</summary>
    private Tensor GuidedGradCam(Tensor x, Tensor t)
    {
        var guided = Walk(x, t, Rule.Guided, null).InputGradient;
        var plain = Walk(x, t, Rule.Plain, null);
        var activation = plain.LastConvolutionOutput!;
        var gradient = plain.LastConvolutionGradient!;
        var alpha = gradient.mean(new long[] { 2, 3 }, keepdim: true);
        var cam = nn.functional.relu((alpha * activation).sum(1, keepdim: true));
        var image = plain.ImageShape!;
        var upsampled = nn.functional.interpolate(cam, size: new long[] { image[2], image[3] }, mode: InterpolationMode.Nearest);
        return (guided.view(image) * upsampled).reshape(x.shape[0], FeatureSize);
    }

    private enum Rule
    {
        Plain,
        Guided,
        DeepLift,
        Lrp,
    }

    private sealed record WalkResult(Tensor InputGradient, Tensor? LastConvolutionOutput, Tensor? LastConvolutionGradient, long[]? ImageShape);

    /// <summary>
    /// Forward layer by layer keeping each input, then backward from the target with each layer's rule: linear layers
    /// by their vector–Jacobian product (LRP: the ε or γ rule), nonlinearities by the method's rule.
    /// </summary>
    private WalkResult Walk(Tensor x, Tensor t, Rule rule, Tensor? baseline)
    {
        var layers = _layers!;
        var inputs = Forward(layers, x);
        var referenceInputs = baseline is null ? null : Forward(layers, baseline.expand(x.shape[0], FeatureSize));
        var output = inputs[^1];
        var grad = zeros_like(output).scatter_(1, t.unsqueeze(1), ones(t.shape[0], 1, device: _device));
        if (rule == Rule.Lrp && _options.LrpScaleByOutput)
            grad = grad * output;
        int camLayer = -1;
        for (int i = layers.Count - 1; i >= 0 && camLayer < 0; i--)
        {
            if (layers[i] is Conv2d)
                camLayer = i;
        }
        if (camLayer >= 0 && _options.GradCamAfterActivation)
        {
            int activation = camLayer + 1;
            while (activation < layers.Count && !IsElementwise(layers[activation]))
                activation++;
            if (activation < layers.Count)
                camLayer = activation;
        }
        Tensor? convolutionGradient = null;
        for (int i = layers.Count - 1; i >= 0; i--)
        {
            var layer = layers[i];
            var a = inputs[i];
            if (i == camLayer)
                convolutionGradient = grad;
            if (rule == Rule.Lrp && layer is BatchNorm1d or BatchNorm2d && i > 0 && layers[i - 1] is Linear or Conv2d)
                continue; // merged into the preceding layer, whose rule sees this layer's output
            if (IsElementwise(layer))
            {
                grad = rule switch
                {
                    Rule.Lrp => grad,
                    Rule.Guided when layer is ReLU => Guided(grad, a),
                    Rule.DeepLift => Rescale(layer, a, referenceInputs![i], inputs[i + 1], referenceInputs[i + 1], grad),
                    _ => VectorJacobian(layer, a, grad),
                };
            }
            else if (rule == Rule.Lrp && !IsShapeOnly(layer))
            {
                var batchNorm = i + 1 < layers.Count && layers[i + 1] is BatchNorm1d or BatchNorm2d ? layers[i + 1] : null;
                grad = Relevance(layer, batchNorm, a, grad);
            }
            else
            {
                grad = VectorJacobian(layer, a, grad);
            }
        }
        var imageShape = inputs.FirstOrDefault(a => a.dim() == 4)?.shape;
        return new WalkResult(grad, camLayer >= 0 ? inputs[camLayer + 1] : null, convolutionGradient, imageShape);
    }

    /// <summary>Guided backprop through a ReLU: the incoming gradient where it and the ReLU's input are both positive.</summary>
    private static Tensor Guided(Tensor grad, Tensor a)
    {
        using var zero = 0.0.ToScalar();
        return grad.clamp_min(zero) * (a > zero);
    }

    private static List<Tensor> Forward(IReadOnlyList<nn.Module<Tensor, Tensor>> layers, Tensor x)
    {
        using var _ = no_grad();
        var inputs = new List<Tensor>(layers.Count + 1) { x };
        foreach (var layer in layers)
            inputs.Add(layer.forward(inputs[^1]));
        return inputs;
    }

    /// <summary>gᵀ ∂layer(a)/∂a.</summary>
    private static Tensor VectorJacobian(nn.Module<Tensor, Tensor> layer, Tensor a, Tensor grad)
    {
        using var _ = enable_grad();
        var input = a.detach().requires_grad_(true);
        var output = layer.forward(input);
        return autograd.grad(new[] { output }, new[] { input }, new[] { grad })[0];
    }

    /// <summary>DeepLift's rescale rule: the multiplier Δy/Δx, or the derivative where |Δx| &lt; 1e-10.</summary>
    private static Tensor Rescale(nn.Module<Tensor, Tensor> layer, Tensor a, Tensor reference, Tensor y, Tensor yReference, Tensor grad)
    {
        var dx = a - reference;
        using var tolerance = DeepLiftTolerance.ToScalar();
        var small = dx.abs() < tolerance;
        var multiplier = (y - yReference) / where(small, ones_like(dx), dx);
        return where(small, VectorJacobian(layer, a, grad), grad * multiplier);
    }

    /// <summary>
    /// LRP for an affine layer z = W a + b: R_in = a ⊙ W′ᵀ (R / stab(z′)) with the ε rule for linear layers
    /// (W′ = W) and the γ rule for convolutions (W′ = W + γW⁺, b′ = b + γb⁺); a following batch norm is merged first.
    /// </summary>
    private Tensor Relevance(nn.Module<Tensor, Tensor> layer, nn.Module<Tensor, Tensor>? batchNorm, Tensor a, Tensor relevance)
    {
        var (weight, bias) = layer switch
        {
            Linear l => (l.weight!, l.bias),
            Conv2d c => (c.weight!, c.bias),
            _ => ((Tensor?)null, (Tensor?)null),
        };
        if (weight is null)
            return a * VectorJacobian(layer, a, relevance / Stabilize(layer.forward(a), _options.LrpEpsilon));
        using var _ = no_grad();
        var w = weight.detach().clone();
        var b = bias?.detach().clone() ?? zeros(w.shape[0], device: _device);
        if (batchNorm is not null)
            (w, b) = MergeBatchNorm(batchNorm, w, b);
        double epsilon = _options.LrpEpsilon;
        if (layer is Conv2d && _options.LrpGamma > 0)
        {
            using var gamma = _options.LrpGamma.ToScalar();
            using var zero = 0.0.ToScalar();
            using var one = 1.ToScalar();
            w = w.add(w.clamp_min(zero) * gamma, one);
            b = b.add(b.clamp_min(zero) * gamma, one);
            epsilon = 0;
        }
        return a * AffineWith(layer, w, b, a, relevance, epsilon);
    }

    /// <summary>W′ᵀ (R / stab(z′)) with z′ = layer(a) computed with weight <paramref name="w"/> and bias <paramref name="b"/>.</summary>
    private static Tensor AffineWith(nn.Module<Tensor, Tensor> layer, Tensor w, Tensor b, Tensor a, Tensor relevance, double epsilon)
    {
        var weight = layer.get_parameter("weight")!;
        var bias = layer.get_parameter("bias");
        var savedWeight = weight.detach().clone();
        var savedBias = bias?.detach().clone();
        try
        {
            using (no_grad())
            {
                weight.copy_(w);
                bias?.zero_();
            }
            using var _ = enable_grad();
            var input = a.detach().requires_grad_(true);
            var linearPart = layer.forward(input);
            var shape = Enumerable.Repeat(1L, (int)linearPart.dim()).ToArray();
            shape[1] = -1;
            using var one = 1.ToScalar();
            var z = linearPart.detach().add(b.view(shape), one);
            return autograd.grad(new[] { linearPart }, new[] { input }, new[] { relevance / Stabilize(z, epsilon) })[0];
        }
        finally
        {
            using (no_grad())
            {
                weight.copy_(savedWeight);
                bias?.copy_(savedBias!);
            }
        }
    }

    /// <summary>Conv/Linear followed by eval-mode batch norm as one affine layer: W·s, (b − μ)·s + β with s = γ/√(σ² + ε).</summary>
    private static (Tensor W, Tensor B) MergeBatchNorm(nn.Module<Tensor, Tensor> batchNorm, Tensor w, Tensor b)
    {
        var buffers = batchNorm.named_buffers().ToDictionary(p => p.name, p => p.buffer);
        var mean = buffers["running_mean"];
        var variance = buffers["running_var"];
        double eps = batchNorm switch { BatchNorm2d n => n.eps, BatchNorm1d n => n.eps, _ => 1e-5 };
        using var epsScalar = eps.ToScalar();
        using var one = 1.ToScalar();
        var scale = batchNorm.get_parameter("weight") is { } gamma ? gamma.detach() / variance.add(epsScalar, one).sqrt() : variance.add(epsScalar, one).rsqrt();
        var shift = batchNorm.get_parameter("bias")?.detach();
        var shape = Enumerable.Repeat(1L, (int)w.dim()).ToArray();
        shape[0] = -1;
        var mergedBias = (b - mean) * scale;
        return (w * scale.view(shape), shift is null ? mergedBias : mergedBias.add(shift, one));
    }

    /// <summary>z + ε·sign(z) with sign(0) = 1, and at least 1e-12 so LRP-0 stays finite.</summary>
    private static Tensor Stabilize(Tensor z, double epsilon)
    {
        using var e = Math.Max(epsilon, 1e-12).ToScalar();
        using var zero = 0.0.ToScalar();
        var sign = where(z >= zero, ones_like(z), -ones_like(z));
        using var one = 1.ToScalar();
        return z.add(sign * e, one);
    }

    private static bool NeedsLayers(GradientMethod method) => method is GradientMethod.DeepLift or GradientMethod.DeepLiftShap
        or GradientMethod.GuidedBackprop or GradientMethod.GuidedGradCam or GradientMethod.Lrp;

    private static bool IsElementwise(nn.Module layer) => layer is ReLU or GELU or Tanh or Sigmoid or SiLU or LeakyReLU or ELU or Softplus;

    private static bool IsShapeOnly(nn.Module layer) => layer is Flatten or Unflatten or Dropout or Dropout1d or Dropout2d or SeededDropout or Identity;

    private static bool IsAffine(nn.Module layer) => layer is Linear or Conv1d or Conv2d or BatchNorm1d or BatchNorm2d or AvgPool2d or AdaptiveAvgPool2d
        or Layers.Monarch.MonarchLinear || IsShapeOnly(layer);

    private static void CheckLayers(IReadOnlyList<nn.Module<Tensor, Tensor>> layers, GradientMethod method)
    {
        foreach (var layer in layers)
        {
            if (!IsAffine(layer) && !IsElementwise(layer))
                throw new NotSupportedException(
                    $"{method} has no rule for the layer {layer.GetType().Name}: it handles affine layers (Linear, Conv, BatchNorm, pooling, reshapes, dropout) " +
                    "and elementwise activations. Use Gradient, SmoothGrad, InputXGradient or IntegratedGradients, or Occlusion or KernelSHAP.");
        }
        if (method == GradientMethod.GuidedGradCam && !layers.Any(l => l is Conv2d))
            throw new NotSupportedException("GuidedGradCam needs a convolutional network (a Conv2d layer, e.g. the Hazy CNN); this network has none.");
    }

    /// <summary>The network's layers in forward order, nested sequentials flattened; null when it is not a plain chain.</summary>
    internal static IReadOnlyList<nn.Module<Tensor, Tensor>>? LayersOf(nn.Module<Tensor, Tensor> network)
    {
        IEnumerable<nn.Module<Tensor, Tensor>>? top = network switch
        {
            ILayeredNetwork layered => layered.Layers,
            Sequential sequential => sequential.children().Cast<nn.Module<Tensor, Tensor>>(),
            _ => null,
        };
        if (top is null)
            return null;
        var result = new List<nn.Module<Tensor, Tensor>>();
        foreach (var layer in top)
        {
            if (layer is Sequential or ILayeredNetwork)
            {
                var inner = LayersOf(layer);
                if (inner is null)
                    return null;
                result.AddRange(inner);
            }
            else
            {
                result.Add(layer);
            }
        }
        return result;
    }

    private static void Validate(GradientAttributionOptions o)
    {
        if (o.SmoothGradSamples < 1)
            throw new ArgumentOutOfRangeException(nameof(o.SmoothGradSamples), o.SmoothGradSamples, "SmoothGradSamples must be at least 1.");
        if (o.SmoothGradSigma < 0)
            throw new ArgumentOutOfRangeException(nameof(o.SmoothGradSigma), o.SmoothGradSigma, "SmoothGradSigma must be non-negative.");
        if (o.Steps < 1)
            throw new ArgumentOutOfRangeException(nameof(o.Steps), o.Steps, "Steps must be at least 1.");
        if (o.LrpEpsilon < 0 || o.LrpGamma < 0)
            throw new ArgumentOutOfRangeException(nameof(o.LrpEpsilon), "LrpEpsilon and LrpGamma must be non-negative.");
        if (o.BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(o.BatchSize), o.BatchSize, "BatchSize must be at least 1.");
    }
}
