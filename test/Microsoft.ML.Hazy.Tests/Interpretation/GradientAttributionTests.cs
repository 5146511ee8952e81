using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>The closed forms of research §4.4 and the methods' defining identities.</summary>
public sealed class GradientAttributionTests
{
    private static readonly float[] W = { 2f, -1f, 0.5f };
    private static readonly float[] X = { 1f, 2f, 3f };

    private static Linear Dense(int inputs, int outputs, float[] weight, float[]? bias)
    {
        var layer = nn.Linear(inputs, outputs, hasBias: bias is not null);
        using (no_grad())
        {
            layer.weight!.copy_(tensor(weight).view(outputs, inputs));
            if (bias is not null)
                layer.bias!.copy_(tensor(bias));
        }
        return layer;
    }

    /// <summary>f(x) = w·x + 0.3.</summary>
    private static Sequential LinearModel() => nn.Sequential(("linear", Dense(3, 1, W, new[] { 0.3f })));

    private static float[] Attribute(nn.Module<Tensor, Tensor> network, GradientMethod method, float[] x, float[][]? baselines = null,
        Action<GradientAttributionOptions>? configure = null, int target = 0)
    {
        var options = new GradientAttributionOptions { Method = method };
        configure?.Invoke(options);
        var attribution = new GradientAttribution(network, x.Length, options, baselines);
        return attribution.Attribute(x, 1, new[] { target });
    }

    private static void AssertClose(float[] actual, double[] expected, double tolerance = 1e-6) =>
        Assert.That(actual.Select(v => (double)v), Is.EqualTo(expected).Within(tolerance), $"got [{string.Join(", ", actual)}]");

    [Test]
    public void LinearModelGradients()
    {
        using var model = LinearModel();
        AssertClose(Attribute(model, GradientMethod.Gradient, X), new[] { 2, 1, 0.5 });
        AssertClose(Attribute(model, GradientMethod.Gradient, X, configure: o => o.Signed = true), new[] { 2, -1, 0.5 });
        AssertClose(Attribute(model, GradientMethod.InputXGradient, X), new[] { 2, -2, 1.5 });
        AssertClose(Attribute(model, GradientMethod.GuidedBackprop, X), new[] { 2, -1, 0.5 });
        AssertClose(Attribute(model, GradientMethod.SmoothGrad, X, configure: o => { o.Signed = true; o.SmoothGradSamples = 7; }), new[] { 2, -1, 0.5 }, 1e-5);
        // LRP-0 on a linear layer from the one-hot seed: x ⊙ w / z with z = f(x) = 1.8; the bias keeps 0.3/1.8 of the relevance 1.
        AssertClose(Attribute(model, GradientMethod.Lrp, X), new[] { 2 / 1.8, -2 / 1.8, 1.5 / 1.8 }, 1e-5);
        AssertClose(Attribute(model, GradientMethod.Lrp, X, configure: o => o.LrpScaleByOutput = true), new[] { 2, -2, 1.5 }, 1e-5);
    }

    [TestCase(GradientMethod.IntegratedGradients)]
    [TestCase(GradientMethod.DeepLift)]
    public void LinearModelBaselines(GradientMethod method)
    {
        using var model = LinearModel();
        foreach (IntegrationRule rule in Enum.GetValues<IntegrationRule>())
            AssertClose(Attribute(model, method, X, configure: o => o.Rule = rule), new[] { 2, -2, 1.5 }, 1e-5);
        AssertClose(Attribute(model, method, X, new[] { new[] { 1f, 1f, 1f } }), new[] { 0.0, -1, 1 }, 1e-5);
        // Two baselines: the mean of the two attributions.
        AssertClose(Attribute(model, method, X, new[] { new float[3], new[] { 1f, 1f, 1f } }), new[] { 1.0, -1.5, 1.25 }, 1e-5);
    }

    [Test]
    public void DeepLiftShapAveragesOverTheBaselineSet()
    {
        using var model = LinearModel();
        AssertClose(Attribute(model, GradientMethod.DeepLiftShap, X, new[] { new float[3], new[] { 1f, 1f, 1f } }), new[] { 1.0, -1.5, 1.25 }, 1e-5);
    }

    /// <summary>f(x) = ReLU(x₁ + x₂ − 1) at x = [1, 1] with x′ = 0: the kink sits at α = ½.</summary>
    [Test]
    public void SingleReluClosedForms()
    {
        using var model = nn.Sequential(("linear", Dense(2, 1, new[] { 1f, 1f }, new[] { -1f })), ("relu", nn.ReLU()));
        var x = new[] { 1f, 1f };
        AssertClose(Attribute(model, GradientMethod.Gradient, x), new[] { 1.0, 1.0 });
        var ixg = Attribute(model, GradientMethod.InputXGradient, x);
        AssertClose(ixg, new[] { 1.0, 1.0 });
        Assert.That(ixg.Sum(), Is.Not.EqualTo(1.0).Within(0.5), "InputXGradient violates completeness here: Σ = 2 while f(x) − f(x′) = 1");
        AssertClose(Attribute(model, GradientMethod.IntegratedGradients, x, configure: o => o.Baselines = new[] { BaselineKind.Zero }), new[] { 0.5, 0.5 });
        AssertClose(Attribute(model, GradientMethod.DeepLift, x), new[] { 0.5, 0.5 });
    }

    /// <summary>f(x) = −ReLU(x₁) + ReLU(x₂) at [1, 1]: gradient [−1, 1], guided backprop [0, 1].</summary>
    [Test]
    public void GuidedBackpropDropsNegativeGradients()
    {
        using var model = nn.Sequential(("hidden", Dense(2, 2, new[] { 1f, 0f, 0f, 1f }, null)), ("relu", nn.ReLU()), ("out", Dense(2, 1, new[] { -1f, 1f }, null)));
        var x = new[] { 1f, 1f };
        AssertClose(Attribute(model, GradientMethod.Gradient, x, configure: o => o.Signed = true), new[] { -1.0, 1.0 });
        AssertClose(Attribute(model, GradientMethod.GuidedBackprop, x), new[] { 0.0, 1.0 });
    }

    private static Sequential ReluMlp(int seed, bool bias)
    {
        manual_seed(seed);
        return nn.Sequential(("l0", nn.Linear(6, 8, hasBias: bias)), ("r0", nn.ReLU()), ("l1", nn.Linear(8, 5, hasBias: bias)), ("r1", nn.ReLU()), ("l2", nn.Linear(5, 3, hasBias: bias)));
    }

    private static float[] RandomRows(int rows, int size, int seed)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, rows * size).Select(_ => (float)(rand.NextDouble() * 4 - 2)).ToArray();
    }

    private static float[] Outputs(nn.Module<Tensor, Tensor> model, float[] rows, int size)
    {
        using var _ = no_grad();
        using var y = model.forward(tensor(rows, new long[] { rows.Length / size, size }));
        return y.data<float>().ToArray();
    }

    /// <summary>
    /// On a bias-free ReLU network LRP-0 seeded with the one-hot target (Zennit) is x ⊙ ∂f_c/∂x / f_c(x) and sums to 1;
    /// seeded with f_c(x) it is InputXGradient (Ancona et al. 2018). Some targets are each row's smallest logit, so some
    /// f_c(x) are negative: there the default map has the opposite sign of InputXGradient.
    /// </summary>
    [Test]
    public void LrpZeroSeededWithOneIsInputXGradientOverTheTargetLogit()
    {
        using var model = ReluMlp(3, bias: false);
        var x = RandomRows(10, 6, 1);
        var f = Outputs(model, x, 6);
        var targets = Enumerable.Range(0, 10).Select(i =>
        {
            var logits = f.AsSpan(i * 3, 3).ToArray();
            return Array.IndexOf(logits, i % 2 == 0 ? logits.Min() : logits.Max());
        }).ToArray();
        var lrp = new GradientAttribution(model, 6, new GradientAttributionOptions { Method = GradientMethod.Lrp }).Attribute(x, 10, targets);
        var scaled = new GradientAttribution(model, 6, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpScaleByOutput = true }).Attribute(x, 10, targets);
        var ixg = new GradientAttribution(model, 6, new GradientAttributionOptions { Method = GradientMethod.InputXGradient }).Attribute(x, 10, targets);
        Assert.That(scaled, Is.EqualTo(ixg).Within(1e-5));
        int negativeRows = 0, flipped = 0;
        for (int i = 0; i < 10; i++)
        {
            double fc = f[i * 3 + targets[i]];
            Assert.That(Math.Abs(fc), Is.GreaterThan(1e-2), $"row {i}: f_c(x) far enough from 0 for the checks below");
            negativeRows += fc < 0 ? 1 : 0;
            Assert.That(lrp.AsSpan(i * 6, 6).ToArray().Sum(), Is.EqualTo(1).Within(1e-4), $"row {i}: Σ relevance");
            for (int j = i * 6; j < i * 6 + 6; j++)
            {
                Assert.That(lrp[j], Is.EqualTo(ixg[j] / fc).Within(1e-5 + 1e-5 * Math.Abs(ixg[j] / fc)), $"row {i} feature {j - i * 6}");
                Assert.That(scaled[j], Is.EqualTo(lrp[j] * fc).Within(1e-5), $"row {i} feature {j - i * 6}: the option is the default times f_c(x)");
                if (fc < 0 && Math.Abs(ixg[j]) > 1e-4)
                {
                    Assert.That(Math.Sign(lrp[j]), Is.EqualTo(-Math.Sign(ixg[j])), $"row {i} feature {j - i * 6}");
                    flipped++;
                }
            }
        }
        Assert.That(negativeRows, Is.GreaterThan(0), "some rows explain a negative logit");
        Assert.That(flipped, Is.GreaterThan(0));
    }

    [Test]
    public void DeepLiftIsCompleteOnReluNetworks()
    {
        using var model = ReluMlp(5, bias: true);
        var x = RandomRows(8, 6, 2);
        var baseline = RandomRows(1, 6, 3);
        var targets = Enumerable.Range(0, 8).Select(i => i % 3).ToArray();
        var options = new GradientAttributionOptions { Method = GradientMethod.DeepLift };
        var a = new GradientAttribution(model, 6, options, new[] { baseline }).Attribute(x, 8, targets);
        var fx = Outputs(model, x, 6);
        var fb = Outputs(model, baseline, 6);
        for (int i = 0; i < 8; i++)
        {
            double sum = a.AsSpan(i * 6, 6).ToArray().Sum();
            Assert.That(sum, Is.EqualTo(fx[i * 3 + targets[i]] - fb[targets[i]]).Within(1e-4), $"row {i}");
        }
    }

    [Test]
    public void IntegratedGradientsConvergeToCompleteness()
    {
        using var model = ReluMlp(7, bias: true);
        var x = RandomRows(6, 6, 4);
        var targets = new int[6];
        var fx = Outputs(model, x, 6);
        var f0 = Outputs(model, new float[6], 6);
        double Gap(int steps)
        {
            var o = new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients, Steps = steps, Rule = IntegrationRule.RiemannTrapezoid, Baselines = new[] { BaselineKind.Zero } };
            var a = new GradientAttribution(model, 6, o).Attribute(x, 6, targets);
            return Enumerable.Range(0, 6).Max(i => Math.Abs(a.AsSpan(i * 6, 6).ToArray().Sum() - (fx[i * 3] - f0[0])));
        }
        double coarse = Gap(4), fine = Gap(2000);
        Assert.That(fine, Is.LessThan(2e-3));
        Assert.That(fine, Is.LessThan(coarse), $"gap with 4 steps {coarse}, with 2000 steps {fine}");
    }

    /// <summary>Unflatten → Conv → BatchNorm → ReLU → Flatten → Linear, the CNN's shape.</summary>
    private static Sequential SmallCnn(int seed, bool bias, bool centredBatchNorm)
    {
        manual_seed(seed);
        var conv = nn.Conv2d(2, 3, 3, stride: 2, padding: 1, bias: bias);
        var norm = nn.BatchNorm2d(3);
        using (no_grad())
        {
            norm.running_var!.copy_(rand(3) + 0.5);
            norm.weight!.copy_(rand(3) + 0.5);
            if (!centredBatchNorm)
            {
                norm.running_mean!.copy_(randn(3));
                norm.bias!.copy_(randn(3));
            }
            else
            {
                norm.bias!.zero_();
            }
        }
        var model = nn.Sequential(("unflatten", nn.Unflatten(1, new long[] { 2, 6, 6 })), ("conv", conv), ("norm", norm), ("relu", nn.ReLU()),
            ("flatten", nn.Flatten()), ("head", nn.Linear(27, 4, hasBias: bias)));
        model.eval();
        return model;
    }

    [Test]
    public void LrpMergesBatchNormIntoTheConvolution()
    {
        // Bias-free and centred batch norm: the merged network is homogeneous, so LRP-0 (γ = 0) times f_c(x) equals InputXGradient.
        using var model = SmallCnn(11, bias: false, centredBatchNorm: true);
        var x = RandomRows(5, 72, 5);
        var targets = new[] { 0, 1, 2, 3, 0 };
        var f = Outputs(model, x, 72);
        var lrp = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0 }).Attribute(x, 5, targets);
        var ixg = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.InputXGradient }).Attribute(x, 5, targets);
        Assert.That(lrp.Select((v, k) => v * f[k / 72 * 4 + targets[k / 72]]), Is.EqualTo(ixg).Within(1e-4));
    }

    [Test]
    public void LrpGammaIsNeutralWhenEveryContributionIsPositive()
    {
        // With non-negative weights and inputs, W + γW⁺ = (1 + γ)W scales numerator and denominator alike.
        using var model = SmallCnn(13, bias: false, centredBatchNorm: true);
        using (no_grad())
        {
            foreach (var p in model.parameters())
                p.abs_();
        }
        var x = RandomRows(3, 72, 6).Select(Math.Abs).ToArray();
        var targets = new[] { 0, 1, 2 };
        var gamma = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0.25 }).Attribute(x, 3, targets);
        var zero = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0 }).Attribute(x, 3, targets);
        Assert.That(gamma, Is.EqualTo(zero).Within(1e-5));
        // And with negative weights the γ rule differs from LRP-0.
        using var mixed = SmallCnn(13, bias: false, centredBatchNorm: true);
        var g2 = new GradientAttribution(mixed, 72, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0.25 }).Attribute(x, 3, targets);
        var z2 = new GradientAttribution(mixed, 72, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0 }).Attribute(x, 3, targets);
        Assert.That(g2.Zip(z2, (a, b) => Math.Abs(a - b)).Max(), Is.GreaterThan(1e-4));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void GuidedGradCamIsGuidedBackpropTimesTheUpsampledCam(bool afterActivation)
    {
        using var model = SmallCnn(17, bias: true, centredBatchNorm: false);
        var x = RandomRows(4, 72, 7);
        var targets = new[] { 3, 2, 1, 0 };
        var ggc = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.GuidedGradCam, GradCamAfterActivation = afterActivation }).Attribute(x, 4, targets);
        var gbp = new GradientAttribution(model, 72, new GradientAttributionOptions { Method = GradientMethod.GuidedBackprop }).Attribute(x, 4, targets);

        // Grad-CAM by plain autograd: A = conv output (3 × 3 × 3), α = spatial mean of ∂f/∂A.
        var layers = model.children().Cast<nn.Module<Tensor, Tensor>>().ToArray();
        using var input = tensor(x, new long[] { 4, 72 });
        var image = layers[0].forward(input);
        // A: the convolution's output, or the ReLU's after batch norm.
        var a = (afterActivation ? layers[3].forward(layers[2].forward(layers[1].forward(image))) : layers[1].forward(image)).detach().requires_grad_(true);
        var y = afterActivation ? layers[5].forward(layers[4].forward(a)) : layers[5].forward(layers[4].forward(layers[3].forward(layers[2].forward(a))));
        var selected = y.gather(1, tensor(targets.Select(t => (long)t).ToArray()).unsqueeze(1)).sum();
        var g = autograd.grad(new[] { selected }, new[] { a })[0];
        var cam = (g.mean(new long[] { 2, 3 }, keepdim: true) * a).sum(1).clamp_min(0).detach();
        var camValues = cam.data<float>().ToArray();
        for (int row = 0; row < 4; row++)
        for (int c = 0; c < 2; c++)
        for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
        {
            int k = row * 72 + c * 36 + i * 6 + j;
            float expected = gbp[k] * camValues[row * 9 + (i / 2) * 3 + j / 2];
            Assert.That(ggc[k], Is.EqualTo(expected).Within(1e-5 + 1e-4 * Math.Abs(expected)), $"row {row} channel {c} pixel ({i}, {j})");
        }
        Assert.That(ggc.Any(v => v != 0), Is.True);
    }

    [Test]
    public void BadInputIsNamed()
    {
        using var model = LinearModel();
        var gradient = new GradientAttribution(model, 3, new GradientAttributionOptions { Method = GradientMethod.Gradient });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => gradient.Attribute(X, 1, new[] { 1 }))!;
        Assert.That(e.Message, Does.Contain("Target class 1").And.Contain("1 output"));
        Assert.Throws<ArgumentException>(() => gradient.Attribute(new float[4], 1, new[] { 0 }));

        using var notLayered = new Opaque();
        var n = Assert.Throws<NotSupportedException>(() => new GradientAttribution(notLayered, 3, new GradientAttributionOptions { Method = GradientMethod.DeepLift }))!;
        Assert.That(n.Message, Does.Contain("Occlusion").And.Contain("KernelSHAP"));
        Assert.DoesNotThrow(() => new GradientAttribution(notLayered, 3, new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients }));
        using var noConvolution = LinearModel();
        Assert.Throws<NotSupportedException>(() => new GradientAttribution(noConvolution, 3, new GradientAttributionOptions { Method = GradientMethod.GuidedGradCam }));
    }

    /// <summary>A network that is not a chain of layers.</summary>
    private sealed class Opaque : nn.Module<Tensor, Tensor>
    {
        private readonly Linear _a = nn.Linear(3, 2);

        public Opaque() : base(nameof(Opaque)) => RegisterComponents();

        public override Tensor forward(Tensor input) => _a.forward(input) * input.sum(1, keepdim: true);
    }
}

public sealed class ModelRandomizationTests
{
    [Test]
    public void RandomWeightsChangeGradientsAndAreRestored()
    {
        manual_seed(21);
        using var model = nn.Sequential(("l0", nn.Linear(10, 16)), ("r0", nn.ReLU()), ("l1", nn.Linear(16, 3)));
        using (no_grad())
        {
            // A "trained" model: class 0 reads features 0-2 strongly.
            model.parameters().First().index_put_(tensor(3f), TensorIndex.Slice(0, 4), TensorIndex.Slice(0, 3));
        }
        var rand = new Random(2);
        var x = Enumerable.Range(0, 40 * 10).Select(_ => (float)rand.NextDouble()).ToArray();
        var targets = new int[40];
        var method = new GradientAttribution(model, 10, new GradientAttributionOptions { Method = GradientMethod.Gradient, Signed = true });
        var trained = method.Attribute(x, 40, targets);
        var randomized = method.AttributeWithRandomWeights(x, 40, targets, seed: 5);
        var again = method.Attribute(x, 40, targets);
        Assert.That(again, Is.EqualTo(trained), "the trained weights are restored");
        double Correlation(float[] a, float[] b)
        {
            double ma = a.Average(), mb = b.Average();
            double cov = a.Zip(b, (p, q) => (p - ma) * (q - mb)).Sum();
            return cov / Math.Sqrt(a.Sum(p => (p - ma) * (p - ma)) * b.Sum(q => (q - mb) * (q - mb)));
        }
        Assert.That(Correlation(trained, randomized), Is.LessThan(0.5), "randomising the weights lowers the similarity of gradient maps");
        Assert.That(method.AttributeWithRandomWeights(x, 40, targets, seed: 5), Is.EqualTo(randomized), "deterministic for a seed");
    }
}
