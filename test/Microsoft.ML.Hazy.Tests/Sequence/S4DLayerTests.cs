using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>The S4D layer and the sequence network around it: views that must agree, masks, exports.</summary>
public sealed class S4DLayerTests
{
    private static S4DLayer NewLayer(int width = 6, bool bidirectional = false, S4DInitialization init = S4DInitialization.Lin,
        S4DDiscretization disc = S4DDiscretization.Zoh, int seed = 1)
    {
        manual_seed(seed);
        var layer = new S4DLayer(width, new S4DOptions { StateSize = 8, Initialization = init, Discretization = disc, DtMin = 0.01, DtMax = 0.5 }, 0.0, bidirectional);
        layer.eval();
        return layer;
    }

    [Test]
    public void StateSpaceParametersAreNamedForTheirOwnGroup()
    {
        using var layer = new S4DLayer(4, new S4DOptions { StateSize = 8, Initialization = S4DInitialization.LegS, TrainB = true }, 0.1, false);
        var names = layer.named_parameters().Select(p => p.name).ToArray();
        Assert.That(names, Is.SupersetOf(new[] { "ssm.log_dt", "ssm.log_A_real", "ssm.A_imag", "ssm.B", "C", "D", "output_linear.weight", "output_linear.bias" }));
        using var fixedB = new S4DLayer(4, new S4DOptions { StateSize = 8, Initialization = S4DInitialization.LegS }, 0.1, false);
        Assert.That(fixedB.named_parameters().Select(p => p.name), Has.No.Member("ssm.B"), "an untrained LegS B is a buffer");
        Assert.That(fixedB.named_buffers().Select(p => p.name), Has.Member("ssm.B"));
    }

    [TestCase(S4DInitialization.Lin, S4DDiscretization.Zoh)]
    [TestCase(S4DInitialization.Inv, S4DDiscretization.Bilinear)]
    [TestCase(S4DInitialization.LegS, S4DDiscretization.Zoh)]
    [TestCase(S4DInitialization.Real, S4DDiscretization.Bilinear)]
    public void StepByStepEqualsWholeSequenceForTheWholeLayer(S4DInitialization init, S4DDiscretization disc)
    {
        // The recurrent view must include D, GELU and the GLU projection (the reference once skipped the activation).
        using var scope = NewDisposeScope();
        using var layer = NewLayer(init: init, disc: disc);
        using var _ = no_grad();
        var x = randn(3, 200, 6);
        var whole = layer.Forward(x, null);
        using var stepper = layer.CreateStepper(3)!;
        for (int t = 0; t < 200; t++)
        {
            var y = stepper.Step(x[TensorIndex.Colon, t]);
            AssertClose(y, whole[TensorIndex.Colon, t], 1e-5, $"step {t}");
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LayerEqualsDirectComputationOfItsFormula(bool bidirectional)
    {
        // GLU(W·GELU(Σ_{s≤t} K_{t−s} u_s [+ Σ_{s>t} K'_{s−t−1} u_s] + D·u)) from the layer's own kernel and weights, in float64.
        using var scope = NewDisposeScope();
        using var layer = NewLayer(bidirectional: bidirectional, seed: 2);
        using var _ = no_grad();
        var x = randn(2, 37, 6);
        AssertClose(layer.Forward(x, null), DirectLayer(layer, x), 1e-5, "layer");
        Assert.That(layer.CreateStepper(1) is null, Is.EqualTo(bidirectional), "only a causal layer streams");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LayerWithoutKernelIsTheSkipThroughGeluAndGlu(bool bidirectional)
    {
        // C = 0 makes every kernel zero, leaving GLU(W·GELU(D·u)) with GELU and GLU written out from their definitions.
        using var scope = NewDisposeScope();
        using var layer = NewLayer(bidirectional: bidirectional, seed: 5);
        using var _ = no_grad();
        layer.get_parameter("C")!.zero_();
        Assert.That(layer.Kernel(23).abs().max().item<float>(), Is.EqualTo(0));
        var x = randn(3, 23, 6);
        var u = x.to(ScalarType.Float64);
        var skip = u * Parameter(layer, "D");
        var gelu = skip * 0.5 * ((skip / Math.Sqrt(2)).erf() + 1);
        var projected = gelu.matmul(Parameter(layer, "output_linear.weight").t()) + Parameter(layer, "output_linear.bias");
        var expected = projected.narrow(-1, 0, 6) / ((-projected.narrow(-1, 6, 6)).exp() + 1);
        AssertClose(layer.Forward(x, null), expected.to(ScalarType.Float32), 1e-6, "skip only");
    }

    [Test]
    public void TiedDropoutDropsWholeFeaturesOfARowAcrossTime()
    {
        // The reference's DropoutNd: one Bernoulli(1 − p) draw per row and feature, shared by all steps, kept values scaled by 1/(1 − p).
        using var scope = NewDisposeScope();
        int rows = 4, steps = 30, features = 16;
        var x = ones(rows, steps, features);
        using var generator = new Generator(11);
        var y = TiedDropout.Apply(x, 0.5, true, generator);
        Assert.That(y.shape, Is.EqualTo(x.shape));
        var first = y.select(1, 0);
        Assert.That(y.eq(first.unsqueeze(1)).all().item<bool>(), Is.True, "each [row, feature] column is constant over time");
        Assert.That(first.eq(0).logical_or(first.eq(2)).all().item<bool>(), Is.True, "dropped to 0 or kept and scaled by 2");
        long kept = first.eq(2).sum().item<long>();
        Assert.That(kept, Is.InRange(16, 48), "about half of the 64 columns kept");
        Assert.That(Enumerable.Range(1, rows - 1).All(r => first[r].eq(first[0]).all().item<bool>()), Is.False, "each row draws its own mask");
        Assert.That(TiedDropout.Apply(x, 0.5, false, generator).eq(x).all().item<bool>(), Is.True, "identity outside training");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void PaddingDoesNotChangeValidOutputs(bool bidirectional)
    {
        using var scope = NewDisposeScope();
        using var layer = NewLayer(bidirectional: bidirectional, seed: 3);
        using var _ = no_grad();
        var x = randn(1, 20, 6);
        var padded = cat(new[] { x, randn(1, 9, 6) * 5 }, 1);
        var mask = SequenceNetwork.Mask(tensor(new long[] { 20 }), 29, ScalarType.Float32)!;
        var y = layer.Forward(padded, mask).narrow(1, 0, 20);
        AssertClose(y, layer.Forward(x, null), 1e-5, "valid steps");
    }

    [TestCase("Direct", false)]
    [TestCase("Fourier", false)]
    [TestCase("MatMulFourier", false)]
    [TestCase("Direct", true)]
    [TestCase("Fourier", true)]
    [TestCase("MatMulFourier", true)]
    public void ExportedLayerEqualsTorchSharp(string convolution, bool bidirectional)
    {
        var mode = Enum.Parse<S4DOnnxConvolution>(convolution);
        using var scope = NewDisposeScope();
        using var layer = NewLayer(bidirectional: bidirectional, seed: 4);
        layer.OnnxConvolution = mode;
        using var _ = no_grad();
        var x = randn(3, 50, 6);
        var g = new OnnxGraphBuilder("layer");
        var input = g.AddInput("x", OnnxElementType.Float, null, null, 6);
        g.AddOutput(layer.ExportOnnx(g, input, null, 50), "y", OnnxElementType.Float, null, null, 6);
        AssertClose(RunOnnx(g, ("x", x)), layer.Forward(x, null), 1e-5, "length 50");

        // The same graph (kernel of 50 steps) on shorter rows, and masked padding in a batch.
        var shorter = x.narrow(1, 0, 31);
        AssertClose(RunOnnx(g, ("x", shorter)), layer.Forward(shorter, null), 1e-5, "length 31");
        var masked = new OnnxGraphBuilder("masked");
        var mi = masked.AddInput("x", OnnxElementType.Float, null, null, 6);
        var mm = masked.AddInput("m", OnnxElementType.Float, null, null, 1);
        masked.AddOutput(layer.ExportOnnx(masked, mi, mm, 50), "y", OnnxElementType.Float, null, null, 6);
        var mask = SequenceNetwork.Mask(tensor(new long[] { 50, 12, 40 }), 50, ScalarType.Float32)!;
        AssertClose(RunOnnx(masked, ("x", x), ("m", mask)) * mask, layer.Forward(x, mask) * mask, 1e-5, "masked");
    }

    [Test]
    public void BatchNormStatisticsIgnorePaddingAndMatchTheFusedKernel()
    {
        // Training statistics of a padded batch are those of its valid steps alone, which the fused kernel computes unpadded.
        using var scope = NewDisposeScope();
        manual_seed(7);
        var x = randn(3, 10, 4) * 2 + 1;
        var mask = SequenceNetwork.Mask(tensor(new long[] { 10, 6, 3 }), 10, ScalarType.Float32)!;
        var valid = cat(new[] { x[0].narrow(0, 0, 10), x[1].narrow(0, 0, 6), x[2].narrow(0, 0, 3) }, 0).unsqueeze(0);
        using var masked = SequenceNorm.Create(SequenceNormalization.BatchNorm, 4);
        using var fused = SequenceNorm.Create(SequenceNormalization.BatchNorm, 4);
        masked.train();
        fused.train();
        var y = masked.forward(x, mask);
        var expected = fused.forward(valid, null);
        var gathered = cat(new[] { y[0].narrow(0, 0, 10), y[1].narrow(0, 0, 6), y[2].narrow(0, 0, 3) }, 0).unsqueeze(0);
        AssertClose(gathered, expected, 1e-5, "normalised valid steps");
        foreach (var name in new[] { "running_mean", "running_var" })
            AssertClose(masked.get_buffer(name)!, fused.get_buffer(name)!, 1e-5, name);
        masked.eval();
        fused.eval();
        using var _ = no_grad();
        AssertClose(masked.forward(x, mask), fused.forward(x, null), 1e-6, "evaluation mode");
    }

    /// <summary>The layer's formula in float64 with the convolution summed directly in the reference's convention.</summary>
    private static Tensor DirectLayer(S4DLayer layer, Tensor x)
    {
        long length = x.shape[1], width = x.shape[2];
        var k = layer.Kernel(length).to(ScalarType.Float64);
        var u = x.to(ScalarType.Float64);
        var y = u * Parameter(layer, "D");
        for (int t = 0; t < length; t++)
        {
            for (int s = 0; s <= t; s++)
                y[TensorIndex.Colon, t] += k[0, TensorIndex.Colon, t - s] * u[TensorIndex.Colon, s];
            if (layer.Bidirectional)
            {
                for (int s = t + 1; s < length; s++)
                    y[TensorIndex.Colon, t] += k[1, TensorIndex.Colon, s - t - 1] * u[TensorIndex.Colon, s];
            }
        }
        var gelu = y * 0.5 * ((y / Math.Sqrt(2)).erf() + 1);
        var projected = gelu.matmul(Parameter(layer, "output_linear.weight").t()) + Parameter(layer, "output_linear.bias");
        return (projected.narrow(-1, 0, width) / ((-projected.narrow(-1, width, width)).exp() + 1)).to(ScalarType.Float32);
    }

    private static Tensor Parameter(S4DLayer layer, string name) =>
        layer.named_parameters().Single(p => p.name == name).parameter.detach().to(ScalarType.Float64);

    internal static Tensor RunOnnx(OnnxGraphBuilder g, params (string Name, Tensor Value)[] inputs)
    {
        using var session = new InferenceSession(g.ToBytes());
        var feeds = inputs.Select(i => NamedOnnxValue.CreateFromTensor(i.Name,
            new DenseTensorF(i.Value.contiguous().data<float>().ToArray(), i.Value.shape.Select(d => (int)d).ToArray()))).ToList();
        using var results = session.Run(feeds);
        var t = results.First().AsTensor<float>();
        return tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    internal static void AssertClose(Tensor actual, Tensor expected, double relTol, string what)
    {
        Assert.That(actual.shape, Is.EqualTo(expected.shape), what);
        double scale = Math.Max(1e-6, expected.abs().max().item<float>());
        double error = (actual - expected).abs().max().item<float>() / scale;
        Assert.That(error, Is.LessThanOrEqualTo(relTol), what);
    }
}
