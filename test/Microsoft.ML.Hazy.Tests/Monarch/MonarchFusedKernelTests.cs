using Microsoft.ML.Hazy.Layers.Monarch;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Monarch;

/// <summary>The fused CPU kernel against the reference two-bmm path: values and all gradients.</summary>
public sealed class MonarchFusedKernelTests
{
    private static IEnumerable<TestCaseData> Factors()
    {
        // (batch, w1 shape, w2 shape)
        yield return new TestCaseData(37, new long[] { 8, 8, 8 }, new long[] { 8, 8, 8 });
        yield return new TestCaseData(16, new long[] { 4, 16, 16 }, new long[] { 4, 16, 16 });
        yield return new TestCaseData(5, new long[] { 8, 192, 96 }, new long[] { 24, 16, 64 });
        yield return new TestCaseData(33, new long[] { 4, 7, 5 }, new long[] { 4, 3, 7 });
        yield return new TestCaseData(20, new long[] { 3, 6, 5 }, new long[] { 2, 9, 9 });
    }

    [TestCaseSource(nameof(Factors))]
    public void FusedEqualsBmmWithGradients(int batch, long[] shape1, long[] shape2)
    {
        Assume.That(MonarchFusedKernel.IsSupported, "no 256-bit SIMD on this machine");
        bool wide = MonarchFusedKernel.UseVector512;
        try
        {
            MonarchFusedKernel.UseVector512 = false;
            CompareWithBmm(batch, shape1, shape2);
            if (wide)
            {
                MonarchFusedKernel.UseVector512 = true;
                CompareWithBmm(batch, shape1, shape2);
            }
        }
        finally
        {
            MonarchFusedKernel.UseVector512 = wide;
        }
    }

    private static void CompareWithBmm(int batch, long[] shape1, long[] shape2)
    {
        manual_seed(12);
        using var x = randn(batch, shape1[0] * shape1[2]).requires_grad_();
        using var w1 = randn(shape1).requires_grad_();
        using var w2 = randn(shape2).requires_grad_();
        using var g = randn(batch, shape2[0] * shape2[1]);

        using var fused = MonarchMultiply.Fused(x, w1, w2);
        using var lossF = (fused * g).sum();
        lossF.backward();
        var fusedGrads = new[] { x.grad!.clone(), w1.grad!.clone(), w2.grad!.clone() };
        foreach (var t in new[] { x, w1, w2 })
            t.grad!.zero_();

        using var reference = MonarchMultiply.Bmm(x, w1, w2);
        using var lossR = (reference * g).sum();
        lossR.backward();
        var refGrads = new[] { x.grad!, w1.grad!, w2.grad! };

        using var scale = reference.abs().max();
        Assert.That(MonarchLinearTests.MaxAbsDiff(fused, reference) / scale.item<float>(), Is.LessThan(1e-5), $"forward, 512-bit {MonarchFusedKernel.UseVector512}");
        string[] names = { "x", "w1", "w2" };
        for (int i = 0; i < 3; i++)
        {
            using var gScale = refGrads[i].abs().max();
            Assert.That(MonarchLinearTests.MaxAbsDiff(fusedGrads[i], refGrads[i]) / gScale.item<float>(), Is.LessThan(1e-5), $"{names[i]}, 512-bit {MonarchFusedKernel.UseVector512}");
        }
    }

    [Test]
    public void LayerGivesTheSameOutputOnBothPathsForBatchedInputs()
    {
        manual_seed(13);
        using var layer = new MonarchLinear(45, 30, nblocks: 4);
        using var x = randn(3, 7, 45);
        using var fused = layer.forward(x);
        layer.UseFusedKernel = false;
        using var reference = layer.forward(x);
        Assert.That(MonarchLinearTests.MaxAbsDiff(fused, reference), Is.LessThan(1e-5));
        using (no_grad())
        {
            layer.UseFusedKernel = true;
            using var inference = layer.forward(x);
            Assert.That(MonarchLinearTests.MaxAbsDiff(inference, reference), Is.LessThan(1e-5));
        }
    }
}
