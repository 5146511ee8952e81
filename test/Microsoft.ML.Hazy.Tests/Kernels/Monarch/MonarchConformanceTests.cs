using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Tests.Monarch;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Kernels.Monarch;

/// <summary>
/// The Monarch conformance suite: every Monarch provider (<see cref="KernelProviderCases.Monarch"/>: the reference, the
/// fused CPU kernel with 256-bit and 512-bit tiles, each with the libtorch and the fused backward) against the
/// reference two-bmm path: values and all gradients, and second-order gradients.
/// </summary>
[TestFixtureSource(typeof(KernelProviderCases), nameof(KernelProviderCases.Monarch))]
public sealed class MonarchConformanceTests(KernelProviderCase provider)
{
    private readonly IMonarchKernels _kernels = provider.Provider.Monarch!;

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
        manual_seed(12);
        using var x = randn(batch, shape1[0] * shape1[2]).requires_grad_();
        using var w1 = randn(shape1).requires_grad_();
        using var w2 = randn(shape2).requires_grad_();
        using var g = randn(batch, shape2[0] * shape2[1]);

        using var fused = MonarchMultiply.Multiply(x, w1, w2, _kernels);
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
        Assert.That(MonarchLinearTests.MaxAbsDiff(fused, reference) / scale.item<float>(), Is.LessThan(1e-5), "forward");
        string[] names = { "x", "w1", "w2" };
        for (int i = 0; i < 3; i++)
        {
            using var gScale = refGrads[i].abs().max();
            Assert.That(MonarchLinearTests.MaxAbsDiff(fusedGrads[i], refGrads[i]) / gScale.item<float>(), Is.LessThan(1e-5), names[i]);
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

    // The provider's backward (fused or bmm) against the reference's autograd, 1e-4 relative, at batches 1 to 1000.
    [TestCaseSource(nameof(BackwardShapes))]
    public void FusedBackwardEqualsBmmBackward(long[] shape1, long[] shape2)
    {
        foreach (int batch in new[] { 1, 7, 33, 1000 })
        {
            var fused = Gradients(_kernels, batch, shape1, shape2);
            var reference = Gradients(KernelRegistry.Reference.Monarch!, batch, shape1, shape2);
            string[] names = { "x", "w1", "w2" };
            for (int i = 0; i < 3; i++)
            {
                using var scale = reference[i].abs().max();
                double relative = MonarchLinearTests.MaxAbsDiff(fused[i], reference[i]) / scale.item<float>();
                Assert.That(relative, Is.LessThan(1e-4), $"grad {names[i]}, batch {batch}");
            }
            foreach (var t in fused.Concat(reference))
                t.Dispose();
        }
    }

    /// <summary>(∂x, ∂w1, ∂w2) of Σ g ⊙ y(x, w1, w2) for fixed random x, w1, w2, g, through <paramref name="kernels"/>.</summary>
    internal static Tensor[] Gradients(IMonarchKernels kernels, int batch, long[] shape1, long[] shape2)
    {
        manual_seed(batch + 31);
        using var x = randn(batch, shape1[0] * shape1[2]).requires_grad_();
        using var w1 = randn(shape1).requires_grad_();
        using var w2 = randn(shape2).requires_grad_();
        using var g = randn(batch, shape2[0] * shape2[1]);
        using var y = MonarchMultiply.Multiply(x, w1, w2, kernels);
        using var loss = (y * g).sum();
        loss.backward();
        return new[] { x.grad!.clone(), w1.grad!.clone(), w2.grad!.clone() };
    }

    [Test]
    public void LayerGivesTheSameOutputOnBothPathsForBatchedInputs()
    {
        manual_seed(13);
        using var layer = new MonarchLinear(45, 30, nblocks: 4) { Kernels = _kernels };
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

    // Second order: ∇_{x,w1,w2} (Σ (∂L/∂x)² + Σ (∂L/∂w1)²) for L = ⟨g, y⟩, with create_graph: true through the provider
    // (float32) against the same through the two-bmm reference in float64; within twice the reference's own float32
    // error plus 1e-6 relative, as the first-order checks.
    [TestCaseSource(nameof(Factors))]
    public void SecondOrderGradientsMatchTheReference(int batch, long[] shape1, long[] shape2)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(14);
        var x = randn([batch, shape1[0] * shape1[2]], generator: gen);
        var w1 = randn(shape1, generator: gen);
        var w2 = randn(shape2, generator: gen);
        var g = randn([batch, shape2[0] * shape2[1]], generator: gen);
        Tensor[] SecondOrder(IMonarchKernels kernels, ScalarType type)
        {
            var leaves = new[] { x, w1, w2 }.Select(t => t.to(type).detach().requires_grad_()).ToArray();
            var y = MonarchMultiply.Multiply(leaves[0], leaves[1], leaves[2], kernels);
            var loss = y.mul(g.to(type)).sum();
            var first = autograd.grad([loss], [leaves[0], leaves[1]], retain_graph: true, create_graph: true);
            var penalty = first[0].pow(2.ToScalar()).sum().add(first[1].pow(2.ToScalar()).sum());
            return autograd.grad([penalty], leaves).Select(t => t.to(ScalarType.Float64)).ToArray();
        }
        var actual = SecondOrder(_kernels, ScalarType.Float32);
        var exact = SecondOrder(KernelRegistry.Reference.Monarch!, ScalarType.Float64);
        var single = SecondOrder(KernelRegistry.Reference.Monarch!, ScalarType.Float32);
        string[] names = { "x", "w1", "w2" };
        for (int i = 0; i < 3; i++)
        {
            double scale = exact[i].abs().max().item<double>();
            double err = actual[i].sub(exact[i]).abs().max().item<double>();
            double naive = single[i].sub(exact[i]).abs().max().item<double>();
            Assert.That(scale, Is.GreaterThan(0), $"{names[i]}: the second-order gradient is not trivially zero");
            Assert.That(err, Is.LessThanOrEqualTo(2 * naive + 1e-6 * scale), $"{names[i]}: error {err:E2}, reference float32 error {naive:E2}, scale {scale:E2}");
        }
    }
}

/// <summary>Properties of the fused CPU kernel itself.</summary>
public sealed class MonarchFusedKernelTests
{
    [Test]
    public void FusedBackwardIsDeterministic()
    {
        Assume.That(MonarchFusedKernel.IsSupported, "no 256-bit SIMD on this machine");
        IMonarchKernels fused = new CpuSimdKernels(new CpuKernelOptions { FusedMonarchBackward = true });
        var first = MonarchConformanceTests.Gradients(fused, 1000, new long[] { 16, 64, 64 }, new long[] { 16, 64, 64 });
        for (int run = 0; run < 3; run++)
        {
            var again = MonarchConformanceTests.Gradients(fused, 1000, new long[] { 16, 64, 64 }, new long[] { 16, 64, 64 });
            for (int i = 0; i < 3; i++)
            {
                Assert.That(MonarchLinearTests.MaxAbsDiff(again[i], first[i]), Is.EqualTo(0.0), $"gradient {i} differs bitwise on run {run + 1}");
                again[i].Dispose();
            }
        }
        foreach (var t in first)
            t.Dispose();
    }
}
