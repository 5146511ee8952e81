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

    [Test]
    public void BidirectionalLayerIsFlipSymmetricAndCannotStream()
    {
        // Swapping the forward and backward C (A and Δ are shared) swaps the kernels: layer'(x) reversed = layer(x reversed).
        using var scope = NewDisposeScope();
        using var layer = NewLayer(bidirectional: true, seed: 2);
        using var swapped = NewLayer(bidirectional: true, seed: 2);
        using (no_grad())
        {
            var c = swapped.get_parameter("C")!;
            c.copy_(c.flip(0));
        }
        using var _ = no_grad();
        var x = randn(2, 37, 6);
        AssertClose(layer.Forward(x.flip(1), null), swapped.Forward(x, null).flip(1), 1e-5, "flip symmetry");
        Assert.That(layer.CreateStepper(1), Is.Null);
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
