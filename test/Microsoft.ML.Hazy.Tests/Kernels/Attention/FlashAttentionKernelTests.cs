using Microsoft.ML.Hazy.Kernels.Attention;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Kernels.Attention;

/// <summary>Properties of the CPU kernel itself, through its span API: the dropout mask's statistics and O(N) memory.</summary>
public sealed class FlashAttentionKernelTests
{
    // Over n = 180,000 scores the kept fraction is Binomial(n, 1 − p) / n, standard deviation √(p(1 − p)/n) ≈ 8.9e-4; the
    // bound is 5 deviations. Masks of two seeds (or two batch-heads) agree, if independent, on (1 − p)² + p² of the scores.
    [Test]
    public void DropoutMaskKeepsOneMinusPAndSeedsAndHeadsAreIndependent()
    {
        const double p = 0.17;
        const int n = 2 * 300 * 300;
        long kept = 0, seedsAgree = 0, headsAgree = 0;
        for (int bh = 0; bh < 2; bh++)
            for (int i = 0; i < 300; i++)
                for (int j = 0; j < 300; j++)
                {
                    bool keep = FlashAttentionKernel.DropoutKeeps(42, bh, i, j, p);
                    kept += keep ? 1 : 0;
                    seedsAgree += keep == FlashAttentionKernel.DropoutKeeps(43, bh, i, j, p) ? 1 : 0;
                    headsAgree += keep == FlashAttentionKernel.DropoutKeeps(42, 1 - bh, i, j, p) ? 1 : 0;
                }
        double bound = 5 * Math.Sqrt(p * (1 - p) / n);
        Assert.That(kept / (double)n, Is.EqualTo(1 - p).Within(bound));
        double agree = (1 - p) * (1 - p) + p * p, agreeBound = 5 * Math.Sqrt(agree * (1 - agree) / n);
        Assert.That(seedsAgree / (double)n, Is.EqualTo(agree).Within(agreeBound), "seeds 42 and 43");
        Assert.That(headsAgree / (double)n, Is.EqualTo(agree).Within(agreeBound), "batch-heads 0 and 1");
    }

    // O(N) extra memory (FlashAttention Theorem 1): with one worker the whole forward runs on this thread, so its managed
    // allocations and the kernel's native tile buffers and key cache are all the call's. Doubling L must at most double
    // them plus a constant (an N × N score matrix would quadruple them), and at L = 2048 they stay far below the
    // 16 MiB of one L × L float matrix. Only Q, K, V, O and LSE, allocated by the caller, are outside the count.
    [Test]
    public void ForwardAllocatesLinearlyInTheLength()
    {
        long Allocated(int length)
        {
            var shape = new AttentionShape(1, 1, length, length, 64);
            var (q, k, v, _) = Inputs(shape, new Random(length));
            var o = new float[shape.QueryElements];
            var lse = new float[shape.RowCount];
            var options = new FlashAttentionOptions { Workers = 1 };
            long managed = GC.GetAllocatedBytesForCurrentThread(), native = FlashAttentionKernel.NativeBytesAllocatedForCurrentThread;
            FlashAttentionKernel.Forward(shape, q, k, v, o, lse, options);
            return GC.GetAllocatedBytesForCurrentThread() - managed + FlashAttentionKernel.NativeBytesAllocatedForCurrentThread - native;
        }
        Allocated(256);
        long at512 = Allocated(512), at1024 = Allocated(1024), at2048 = Allocated(2048);
        TestContext.Out.WriteLine($"bytes allocated: L=512 {at512:N0}, L=1024 {at1024:N0}, L=2048 {at2048:N0}");
        const long constant = 64 << 10;
        Assert.That(at1024, Is.LessThanOrEqualTo(2 * at512 + constant));
        Assert.That(at2048, Is.LessThanOrEqualTo(2 * at1024 + constant));
        Assert.That(at2048, Is.LessThan(2048L * 2048 * sizeof(float) / 8));
        Assert.That(at2048 - at1024, Is.GreaterThan(0), "the key cache grows with L (the count sees native memory)");
    }

    private static (float[] Q, float[] K, float[] V, float[] DO) Inputs(AttentionShape s, Random rng) =>
        (NaiveAttention.Random(rng, s.QueryElements), NaiveAttention.Random(rng, s.KeyElements),
         NaiveAttention.Random(rng, s.KeyElements), NaiveAttention.Random(rng, s.QueryElements));
}
