using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Tests.Cnn;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>Every gradient method on a trained Hazy CNN (Conv2d, BatchNorm2d, ReLU, Dropout2d, Linear), through the catalog.</summary>
public sealed class CnnAttributionTests
{
    private const int Size = BlobImages.Channels * BlobImages.Height * BlobImages.Width;
    private static MLContext _ml = null!;
    private static BlobImages.Row[] _rows = null!;
    private static IDataView _data = null!;
    private static HazyPredictionTransformer _model = null!;

    [OneTimeSetUp]
    public void Train()
    {
        _ml = new MLContext(5);
        _rows = BlobImages.Make(150, 3);
        _data = BlobImages.Keyed(_ml, _rows);
        _model = _ml.MulticlassClassification.Trainers.HazyCnn(BlobImages.SmallOptions()).Fit(_data);
    }

    [OneTimeTearDown]
    public void Dispose() => _model.Dispose();

    private static float[][] Attributions(GradientAttributionOptions options) =>
        _ml.Hazy().Interpretation.Attribution(_model, options).Fit(_data).Transform(_data).GetColumn<float[]>("Attribution").ToArray();

    [Test]
    public void EveryMethodRunsOnTheCnn()
    {
        foreach (var method in Enum.GetValues<GradientMethod>())
        {
            var a = Attributions(new GradientAttributionOptions { Method = method, SmoothGradSamples = 8, Steps = 16, DeepLiftShapBaselines = 5 });
            Assert.That(a, Has.Length.EqualTo(150), method.ToString());
            Assert.That(a.All(r => r.Length == Size && r.All(float.IsFinite)), Is.True, $"{method}: finite maps of {Size} values");
            Assert.That(a.Any(r => r.Any(v => v != 0)), Is.True, $"{method}: not all zero");
        }
    }

    private sealed record Maps(double[] GuidedBackprop, double[] Lrp, double[] GuidedGradCam, double[] TargetLogits);

    /// <summary>
    /// Guided Backprop, LRP-0 seeded with the one-hot target and Guided Grad-CAM (the last convolution's raw output) of
    /// the trained CNN, written out block by block with functional ops in <paramref name="type"/> from its state dict:
    /// each batch norm folded into its convolution, and a convolution's transpose taken as the input gradient of one
    /// conv2d. Nothing here goes through <see cref="GradientAttribution"/>.
    /// </summary>
    private static Maps Independent(ScalarType type)
    {
        using var scope = NewDisposeScope();
        var p = _model.Network.state_dict().ToDictionary(e => e.Key, e => e.Value.detach().to(type));
        var options = BlobImages.SmallOptions();
        long[] stride = { options.Stride, options.Stride }, padding = { options.Padding, options.Padding };
        double eps = ((ILayeredNetwork)_model.Network).Layers.OfType<BatchNorm2d>().First().eps;
        int blocks = options.Filters.Length, n = _rows.Length;
        var labels = _data.GetColumn<uint>("Label").Select(l => (long)l - 1).ToArray();
        var oneHot = nn.functional.one_hot(tensor(labels), 3).to(type);

        Tensor ConvTranspose(Tensor a, Tensor w, Tensor g)
        {
            using var _ = enable_grad();
            var leaf = a.detach().requires_grad_(true);
            var y = nn.functional.conv2d(leaf, w, null, strides: stride, padding: padding);
            return autograd.grad(new[] { y }, new[] { leaf }, new[] { g })[0];
        }

        // Forward: conv(a, W·s, (b − μ)·s + β) with s = γ/√(σ² + ε), then ReLU; dropout is the identity in evaluation.
        var a = tensor(_rows.SelectMany(r => r.Features).ToArray(), new long[] { n, BlobImages.Channels, BlobImages.Height, BlobImages.Width }).to(type);
        var inputs = new List<Tensor>();
        var preActivations = new List<Tensor>();
        var merged = new List<Tensor>();
        Tensor lastScale = null!, lastRaw = null!;
        for (int i = 0; i < blocks; i++)
        {
            var scale = p[$"layers.norm{i}.weight"] / (p[$"layers.norm{i}.running_var"] + eps).sqrt();
            var w = p[$"layers.conv{i}.weight"] * scale.view(-1, 1, 1, 1);
            var b = (p[$"layers.conv{i}.bias"] - p[$"layers.norm{i}.running_mean"]) * scale + p[$"layers.norm{i}.bias"];
            inputs.Add(a);
            merged.Add(w);
            var z = nn.functional.conv2d(a, w, b, strides: stride, padding: padding);
            preActivations.Add(z);
            lastScale = scale;
            lastRaw = nn.functional.conv2d(a, p[$"layers.conv{i}.weight"], p[$"layers.conv{i}.bias"], strides: stride, padding: padding);
            a = z.clamp_min(0);
        }
        var head = p["layers.head.weight"];
        var logits = a.flatten(1).matmul(head.t()) + p["layers.head.bias"];

        // Guided Backprop: through each ReLU only the positive part of the gradient, where the ReLU's input is positive.
        var g = oneHot.matmul(head).view(a.shape);
        var plainAtLast = g * (preActivations[^1] > 0);
        for (int i = blocks - 1; i >= 0; i--)
            g = ConvTranspose(inputs[i], merged[i], g.clamp_min(0) * (preActivations[i] > 0));
        var guided = g.reshape(n, -1);

        // LRP-0 (z rule everywhere, ReLU passes relevance): R_in = a ⊙ Wᵀ(R / z), starting from R = one-hot at the logits.
        var r = (a.flatten(1) * (oneHot / logits).matmul(head)).view(a.shape);
        for (int i = blocks - 1; i >= 0; i--)
        {
            var z = preActivations[i];
            r = inputs[i] * ConvTranspose(inputs[i], merged[i], r / where(z == 0, ones_like(z), z));
        }

        // Grad-CAM on the last convolution's raw output A: ∂f/∂A = ∂f/∂z · s, α_k its spatial mean.
        var alpha = (plainAtLast * lastScale.view(1, -1, 1, 1)).mean(new long[] { 2, 3 }, keepdim: true);
        var cam = (alpha * lastRaw).sum(1).clamp_min(0);
        var camValues = cam.to(ScalarType.Float64).data<double>().ToArray();
        long camHeight = cam.shape[1], camWidth = cam.shape[2];
        var guidedValues = guided.to(ScalarType.Float64).data<double>().ToArray();
        var guidedGradCam = new double[guidedValues.Length];
        for (int row = 0; row < n; row++)
        for (int c = 0; c < BlobImages.Channels; c++)
        for (int y = 0; y < BlobImages.Height; y++)
        for (int x = 0; x < BlobImages.Width; x++)
        {
            // Nearest upsampling from camHeight × camWidth: source index ⌊y · camHeight / Height⌋.
            int k = ((row * BlobImages.Channels + c) * BlobImages.Height + y) * BlobImages.Width + x;
            long source = (row * camHeight + y * camHeight / BlobImages.Height) * camWidth + x * camWidth / BlobImages.Width;
            guidedGradCam[k] = guidedValues[k] * camValues[source];
        }
        var targetLogits = logits.gather(1, tensor(labels).unsqueeze(1)).to(ScalarType.Float64).data<double>().ToArray();
        return new Maps(guidedValues, r.reshape(n, -1).to(ScalarType.Float64).data<double>().ToArray(), guidedGradCam, targetLogits);
    }

    /// <summary>
    /// Asserts each row of <paramref name="actual"/> equals the float64 reference within ten times the error of the same
    /// computation in float32 on that row, plus 1e-5 of the row's largest value. The library computes in float32 in
    /// another order, so its error is of the same kind but not the same size; the second term is the a-priori bound
    /// of three float32 layers of sums of at most 36 terms (3 · 36 · 2⁻²⁴ ≈ 6.4e-6), which covers a row where the
    /// reference's own float32 error happens to be near zero.
    /// </summary>
    private static void AssertMatchesReference(float[][] actual, Func<Maps, double[]> map)
    {
        var exact = map(Independent(ScalarType.Float64));
        var single = map(Independent(ScalarType.Float32));
        int nonzeroRows = 0;
        for (int row = 0; row < actual.Length; row++)
        {
            var range = Enumerable.Range(row * Size, Size);
            double error = range.Max(k => Math.Abs(single[k] - exact[k]));
            double scale = range.Max(k => Math.Abs(exact[k]));
            double tolerance = 10 * error + 1e-5 * scale;
            nonzeroRows += scale > 0 ? 1 : 0;
            for (int j = 0; j < Size; j++)
                Assert.That(actual[row][j], Is.EqualTo(exact[row * Size + j]).Within(tolerance), $"row {row} value {j} (row scale {scale:G3}, float32 error {error:G3})");
        }
        Assert.That(nonzeroRows, Is.GreaterThan(actual.Length / 2), "most rows have a non-zero map");
    }

    [Test]
    public void GuidedBackpropMatchesAnIndependentGuidedReluBackwardOnTheCnn() =>
        AssertMatchesReference(Attributions(new GradientAttributionOptions { Method = GradientMethod.GuidedBackprop }), m => m.GuidedBackprop);

    [Test]
    public void LrpZeroMatchesAnIndependentFloat64ComputationOnTheCnn()
    {
        var lrp = Attributions(new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpGamma = 0, LrpEpsilon = 0 });
        AssertMatchesReference(lrp, m => m.Lrp);
    }

    [Test]
    public void GuidedGradCamIsGuidedBackpropTimesTheUpsampledCamOnTheCnn() =>
        AssertMatchesReference(Attributions(new GradientAttributionOptions { Method = GradientMethod.GuidedGradCam }), m => m.GuidedGradCam);

    [Test]
    public void DeepLiftIsCompleteOnTheCnn()
    {
        var a = Attributions(new GradientAttributionOptions { Method = GradientMethod.DeepLift, Baselines = new[] { BaselineKind.Zero } });
        var labels = _data.GetColumn<uint>("Label").ToArray();
        using var _ = no_grad();
        var x = tensor(_rows.SelectMany(r => r.Features).ToArray(), new long[] { 150, Size });
        var fx = _model.Network.forward(x).data<float>().ToArray();
        var f0 = _model.Network.forward(zeros(1, Size)).data<float>().ToArray();
        for (int i = 0; i < 150; i += 7)
        {
            int c = (int)labels[i] - 1;
            Assert.That(a[i].Sum(), Is.EqualTo(fx[i * 3 + c] - f0[c]).Within(1e-3 + 1e-3 * Math.Abs(fx[i * 3 + c])), $"row {i}");
        }
    }

    [Test]
    public void IntegratedGradientsConcentrateOnTheBlob()
    {
        // The class is where a bright 2×2 blob sits; the model should credit the blob's pixels far beyond their share.
        var a = Attributions(new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients, Baselines = new[] { BaselineKind.Zero } });
        double share = 0;
        for (int i = 0; i < 150; i++)
        {
            var x = _rows[i].Features;
            var blob = Enumerable.Range(0, Size).Where(j => x[j] > 0.7).ToArray();
            share += blob.Sum(j => Math.Abs(a[i][j])) / a[i].Sum(Math.Abs);
        }
        share /= 150;
        Assert.That(share, Is.GreaterThan(0.2), $"mean share of |IG| on the 4 blob pixels of {Size}: {share:F3}");
    }
}
