using Microsoft.ML.Hazy.Layers.Monarch;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Monarch;

/// <summary>The fused CPU kernel against the reference two-bmm path: values and all gradients, and its fused backward against the bmm backward.</summary>
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

    private static IEnumerable<TestCaseData> BackwardShapes()
    {
        // (w1 shape, w2 shape): square n = 256 at nblocks 1/4/16/64, MonarchLinear's two rectangular layouts, and odd blocks.
        yield return new TestCaseData(new long[] { 1, 256, 256 }, new long[] { 1, 256, 256 }).SetName("Square256Nblocks1");
        yield return new TestCaseData(new long[] { 4, 64, 64 }, new long[] { 4, 64, 64 }).SetName("Square256Nblocks4");
        yield return new TestCaseData(new long[] { 16, 16, 16 }, new long[] { 16, 16, 16 }).SetName("Square256Nblocks16");
        yield return new TestCaseData(new long[] { 64, 4, 4 }, new long[] { 64, 4, 4 }).SetName("Square256Nblocks64");
        yield return new TestCaseData(new long[] { 4, 24, 24 }, new long[] { 4, 40, 24 }).SetName("Widening96To160Nblocks4");
        yield return new TestCaseData(new long[] { 4, 24, 40 }, new long[] { 4, 24, 24 }).SetName("Narrowing160To96Nblocks4");
        yield return new TestCaseData(new long[] { 16, 4, 4 }, new long[] { 16, 16, 4 }).SetName("Widening64To256Nblocks16");
        yield return new TestCaseData(new long[] { 8, 192, 96 }, new long[] { 24, 16, 64 }).SetName("Rectangular768To384");
        yield return new TestCaseData(new long[] { 4, 7, 5 }, new long[] { 4, 3, 7 }).SetName("OddBlocks");
        yield return new TestCaseData(new long[] { 3, 6, 5 }, new long[] { 2, 9, 9 }).SetName("UnequalBlockCounts");
    }

    [TestCaseSource(nameof(BackwardShapes))]
    public void FusedBackwardEqualsBmmBackward(long[] shape1, long[] shape2)
    {
        Assume.That(MonarchFusedKernel.IsSupported, "no 256-bit SIMD on this machine");
        bool wide = MonarchFusedKernel.UseVector512;
        try
        {
            foreach (bool useWide in wide ? new[] { false, true } : new[] { false })
            {
                MonarchFusedKernel.UseVector512 = useWide;
                foreach (int batch in new[] { 1, 7, 33, 1000 })
                {
                    var fused = Gradients(batch, shape1, shape2, fusedBackward: true);
                    var reference = Gradients(batch, shape1, shape2, fusedBackward: false);
                    string[] names = { "x", "w1", "w2" };
                    for (int i = 0; i < 3; i++)
                    {
                        using var scale = reference[i].abs().max();
                        double relative = MonarchLinearTests.MaxAbsDiff(fused[i], reference[i]) / scale.item<float>();
                        Assert.That(relative, Is.LessThan(1e-4), $"grad {names[i]}, batch {batch}, 512-bit {useWide}");
                    }
                    foreach (var t in fused.Concat(reference))
                        t.Dispose();
                }
            }
        }
        finally
        {
            MonarchFusedKernel.UseVector512 = wide;
        }
    }

    [Test]
    public void FusedBackwardIsDeterministic()
    {
        Assume.That(MonarchFusedKernel.IsSupported, "no 256-bit SIMD on this machine");
        var first = Gradients(1000, new long[] { 16, 64, 64 }, new long[] { 16, 64, 64 }, fusedBackward: true);
        for (int run = 0; run < 3; run++)
        {
            var again = Gradients(1000, new long[] { 16, 64, 64 }, new long[] { 16, 64, 64 }, fusedBackward: true);
            for (int i = 0; i < 3; i++)
            {
                Assert.That(MonarchLinearTests.MaxAbsDiff(again[i], first[i]), Is.EqualTo(0.0), $"gradient {i} differs bitwise on run {run + 1}");
                again[i].Dispose();
            }
        }
        foreach (var t in first)
            t.Dispose();
    }

    /// <summary>(∂x, ∂w1, ∂w2) of Σ g ⊙ Fused(x, w1, w2) for fixed random x, w1, w2, g, through the chosen backward.</summary>
    private static Tensor[] Gradients(int batch, long[] shape1, long[] shape2, bool fusedBackward)
    {
        bool previous = MonarchFusedKernel.UseFusedBackward;
        try
        {
            MonarchFusedKernel.UseFusedBackward = fusedBackward;
            manual_seed(batch + 31);
            using var x = randn(batch, shape1[0] * shape1[2]).requires_grad_();
            using var w1 = randn(shape1).requires_grad_();
            using var w2 = randn(shape2).requires_grad_();
            using var g = randn(batch, shape2[0] * shape2[1]);
            using var y = MonarchMultiply.Fused(x, w1, w2);
            using var loss = (y * g).sum();
            loss.backward();
            return new[] { x.grad!.clone(), w1.grad!.clone(), w2.grad!.clone() };
        }
        finally
        {
            MonarchFusedKernel.UseFusedBackward = previous;
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
