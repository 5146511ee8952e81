using Microsoft.ML.Hazy.Sequence.Attention;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence.Attention;

public sealed class FlashAttentionKernelTests
{
    private static readonly SimdLevel[] Levels = Enum.GetValues<SimdLevel>().Where(l => l <= FlashAttentionKernel.BestSimdLevel).ToArray();

    private sealed record Run(float[] O, float[] Lse, float[] Dq, float[] Dk, float[] Dv);

    private static Run Flash(AttentionShape s, float[] q, float[] k, float[] v, float[]? dO, FlashAttentionOptions options)
    {
        var o = new float[s.QueryElements];
        var lse = new float[s.RowCount];
        FlashAttentionKernel.Forward(s, q, k, v, o, lse, options);
        var dq = new float[s.QueryElements];
        var dk = new float[s.KeyElements];
        var dv = new float[s.KeyElements];
        if (dO is not null)
            FlashAttentionKernel.Backward(s, q, k, v, o, lse, dO, dq, dk, dv, options);
        return new Run(o, lse, dq, dk, dv);
    }

    // Research report §2.9: d = 4, τ = 1/2, hand-checkable O, LSE and gradients.
    private static readonly float[] PaperQ = [1, 0, 2, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 2, 1, 1];
    private static readonly float[] PaperK = [2, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 2, 1];
    private static readonly float[] PaperV2 = [1, 0, 0, 1, 1, 1, 2, 1];

    [TestCaseSource(nameof(Levels))]
    public void PaperVectorsFullAndCausal(SimdLevel level)
    {
        // V is 4×2 in the report; the kernel needs V's width = d, so V is padded with two zero columns (O's extra columns are 0).
        var v = new float[16];
        var dO = new float[16];
        float[] paperDo = [1, -1, .5f, 2, -1, 0, 1, 1];
        for (int r = 0; r < 4; r++)
        {
            v[r * 4] = PaperV2[r * 2];
            v[r * 4 + 1] = PaperV2[r * 2 + 1];
            dO[r * 4] = paperDo[r * 2];
            dO[r * 4 + 1] = paperDo[r * 2 + 1];
        }
        var shape = new AttentionShape(1, 1, 4, 4, 4);
        var full = Flash(shape, PaperQ, PaperK, v, dO, new FlashAttentionOptions { Scale = 0.5, MaxSimdLevel = level });
        AssertClose(Columns(full.O, 2), [1.269873, 0.842940, 1, 0.811230, 1, 0.573067, 1, 0.811230], 2e-6);
        AssertClose(full.Lse, [2.851129, 2.167224, 2.351129, 2.667224], 2e-6);
        AssertClose(Columns(full.Dv, 2), [.013283, .409251, .466844, .776629, .283156, .307363, .736717, .506756], 2e-6);
        AssertClose(full.Dq, [.034729, -.067054, .077328, .067054, -.270638, -.172193, .289694, .172193, 0, .078530, -.078530, -.078530, -.135319, -.202807, .261558, .202807], 2e-6);
        AssertClose(full.Dk, [.045003, -.306272, -.139698, -.076568, -.033527, -.193005, -.369410, -.047709, -.055277, .071268, -.057102, .017817, .043801, .428009, .566210, .106460], 2e-6);

        var causal = Flash(shape, PaperQ, PaperK, v, null, new FlashAttentionOptions { Scale = 0.5, Causal = true, MaxSimdLevel = level });
        AssertClose(Columns(causal.O, 2), [1, 0, 0.377541, 0.622459, 0.813676, 0.493520, 1, 0.811230], 2e-6);
        AssertClose(causal.Lse, [1, 1.474077, 2.180270, 2.667224], 2e-6);
    }

    private static float[] Columns(float[] x, int keep) => Enumerable.Range(0, x.Length / 4).SelectMany(r => x.Skip(r * 4).Take(keep)).ToArray();

    private static void AssertClose(float[] actual, double[] expected, double tolerance)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(tolerance), $"element {i}");
    }

    private static IEnumerable<TestCaseData> RandomCases()
    {
        foreach (int length in new[] { 1, 97, 257, 1025 })
            foreach (int d in new[] { 16, 64, 128 })
                yield return new TestCaseData(length, d);
    }

    // Kernel error vs the float64 reference ≤ 2 × the naive fp32 error + 1e-6, for O, LSE and all gradients.
    [TestCaseSource(nameof(RandomCases))]
    public void MatchesFloat64ReferenceWithinTwiceNaiveFloat32Error(int length, int d)
    {
        // One head at 1025 keeps the float64 reference's time small.
        var shape = new AttentionShape(1, length > 1000 ? 1 : 2, length, length, d);
        CheckAgainstReference(shape, new FlashAttentionOptions(), seed: length * 1000 + d);
    }

    [TestCase(70, 150)]
    [TestCase(150, 70)]
    public void CausalWithDifferentLengthsIsAlignedBottomRight(int lq, int lk)
    {
        var shape = new AttentionShape(1, 2, lq, lk, 32);
        var run = CheckAgainstReference(shape, new FlashAttentionOptions { Causal = true }, seed: 5);
        // With more queries than keys, query i sees keys j ≤ i − (lq − lk): the first lq − lk rows see nothing.
        int blind = Math.Max(0, lq - lk);
        for (int i = 0; i < blind; i++)
        {
            Assert.That(run.O.Skip(i * 32).Take(32), Is.All.EqualTo(0f));
            Assert.That(float.IsNegativeInfinity(run.Lse[i]), Is.True);
        }
        if (blind < lq)
            Assert.That(run.O.Skip(blind * 32).Take(32).Any(x => x != 0), Is.True);
    }

    [Test]
    public void KeyPaddingMasksTrailingKeysAndEmptySequencesGiveZeros()
    {
        var shape = new AttentionShape(3, 2, 90, 130, 16);
        var run = CheckAgainstReference(shape, new FlashAttentionOptions { KeyLengths = [130, 77, 0] }, seed: 11);
        long perBatch = 2L * 90 * 16;
        Assert.That(run.O.Skip((int)(2 * perBatch)).Take((int)perBatch), Is.All.EqualTo(0f));
        Assert.That(run.Dq.Skip((int)(2 * perBatch)).Take((int)perBatch), Is.All.EqualTo(0f));
        Assert.That(run.O.Concat(run.Dq).Concat(run.Dk).Concat(run.Dv).Any(float.IsNaN), Is.False);
        // Padded keys and values get no gradient.
        long keyBatch = 2L * 130 * 16;
        for (int h = 0; h < 2; h++)
            Assert.That(run.Dk.Skip((int)(keyBatch + (h * 130 + 77) * 16)).Take(53 * 16), Is.All.EqualTo(0f));
    }

    [Test]
    public void AllOnesBlockMaskEqualsDenseExactly()
    {
        var shape = new AttentionShape(1, 2, 200, 170, 64);
        var rng = new Random(3);
        var (q, k, v, dO) = Inputs(shape, rng);
        var dense = Flash(shape, q, k, v, dO, new FlashAttentionOptions());
        var ones = Flash(shape, q, k, v, dO, new FlashAttentionOptions { BlockMask = BlockSparseMask.Dense(200, 170) });
        Assert.That(ones.O, Is.EqualTo(dense.O));
        Assert.That(ones.Lse, Is.EqualTo(dense.Lse));
        Assert.That(ones.Dq, Is.EqualTo(dense.Dq));
        Assert.That(ones.Dk, Is.EqualTo(dense.Dk));
        Assert.That(ones.Dv, Is.EqualTo(dense.Dv));
    }

    [Test]
    public void RandomBlockMaskEqualsDenseAttentionWithMinusInfinityOutside()
    {
        var rng = new Random(17);
        var blocks = new bool[7, 5];
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < 5; j++)
                blocks[i, j] = rng.NextDouble() < 0.5;
        for (int j = 0; j < 5; j++)
            blocks[6, j] = false; // the last query block is fully masked: zeros, not NaN
        var mask = new BlockSparseMask(blocks, 32, 32);
        var shape = new AttentionShape(1, 2, 200, 150, 32);
        var run = CheckAgainstReference(shape, new FlashAttentionOptions { BlockMask = mask }, seed: 19);
        Assert.That(run.O.Skip(192 * 32).Take(8 * 32), Is.All.EqualTo(0f));
    }

    [Test]
    public void RepackingKeyTilesWithoutTheCacheGivesIdenticalResults()
    {
        var shape = new AttentionShape(2, 2, 150, 300, 64);
        var (q, k, v, _) = Inputs(shape, new Random(41));
        var cached = Flash(shape, q, k, v, null, new FlashAttentionOptions { Causal = true });
        var repacked = Flash(shape, q, k, v, null, new FlashAttentionOptions { Causal = true, KeyCacheBytes = 0 });
        Assert.That(repacked.O, Is.EqualTo(cached.O));
        Assert.That(repacked.Lse, Is.EqualTo(cached.Lse));
    }

    [Test]
    public void CausalBlockMaskWithCausalFlagEqualsCausal()
    {
        var shape = new AttentionShape(1, 1, 300, 300, 16);
        var (q, k, v, dO) = Inputs(shape, new Random(23));
        var causal = Flash(shape, q, k, v, dO, new FlashAttentionOptions { Causal = true });
        var both = Flash(shape, q, k, v, dO, new FlashAttentionOptions { Causal = true, BlockMask = BlockSparseMask.Causal(300, 300) });
        Assert.That(both.O, Is.EqualTo(causal.O));
        Assert.That(both.Dq, Is.EqualTo(causal.Dq));
    }

    [Test]
    public void PatternBuildersHaveTheDocumentedSupport()
    {
        var butterfly = BlockSparseMask.FlatButterfly(16 * 64, 16 * 64, factors: 2, globalBlocks: 1);
        Assert.That(butterfly[5, 5] && butterfly[5, 4] && butterfly[5, 7] && butterfly[0, 9] && butterfly[9, 0], Is.True);
        Assert.That(butterfly[5, 6] || butterfly[5, 1] || butterfly[8, 12], Is.False); // 5^6 = 3 (not a power of 2), 5^1 = 4 = 2^2 ≥ 2 factors
        var local = BlockSparseMask.Local(10 * 64, 10 * 64, bandBlocks: 1);
        Assert.That(local.Density, Is.EqualTo(28 / 100.0).Within(1e-12));
        var diag = BlockSparseMask.BlockDiagonal(8 * 64, 8 * 64, groupBlocks: 2);
        Assert.That(diag[2, 3] && !diag[1, 2], Is.True);
        Assert.That(BlockSparseMask.Causal(4 * 64, 4 * 64)[1, 2], Is.False);
        Assert.Throws<ArgumentException>(() => Flash(new AttentionShape(1, 1, 64, 64, 16), new float[1024], new float[1024], new float[1024], null,
            new FlashAttentionOptions { BlockMask = BlockSparseMask.Dense(128, 64) }));
    }

    [TestCaseSource(nameof(Levels))]
    public void EveryInstructionSetMatchesTheReference(SimdLevel level)
    {
        var shape = new AttentionShape(2, 1, 133, 101, 40);
        CheckAgainstReference(shape, new FlashAttentionOptions { Causal = true, MaxSimdLevel = level }, seed: 29);
    }

    private static IEnumerable<TestCaseData> TileCases() =>
        from level in Levels
        from tiles in new[] { (16, 16), (32, 48), (48, 96), (256, 256) }
        select new TestCaseData(level, tiles.Item1, tiles.Item2);

    // The fused AVX-512 forward works in strips of 64 keys: tiles narrower or wider than a strip, or ending mid-strip,
    // with key padding and causal cuts inside a strip, must match the float64 reference like the default tiles, as must
    // the general path (AVX2, scalar).
    [TestCaseSource(nameof(TileCases))]
    public void TileSizesAcrossTheKeyStripMatchTheReference(SimdLevel level, int queryBlock, int keyBlock)
    {
        var shape = new AttentionShape(2, 2, 131, 203, 40);
        CheckAgainstReference(shape, new FlashAttentionOptions
        {
            Causal = true, KeyLengths = [203, 77], QueryBlockSize = queryBlock, KeyBlockSize = keyBlock, MaxSimdLevel = level,
        }, seed: 31);
    }

    // Dropout in the fused step multiplies the probabilities after the row statistics, as the general path does: same
    // mask, same output up to rounding.
    [Test]
    public void FusedAndGeneralForwardAgreeWithDropoutAndMasks()
    {
        var shape = new AttentionShape(2, 3, 150, 170, 48);
        var (q, k, v, _) = Inputs(shape, new Random(37));
        var options = new FlashAttentionOptions { Causal = true, KeyLengths = [170, 90], DropoutProbability = 0.3, DropoutSeed = 5 };
        var fused = Flash(shape, q, k, v, null, options);
        try
        {
            FlashAttentionKernel.UseFusedForward = false;
            var general = Flash(shape, q, k, v, null, options);
            for (int i = 0; i < fused.O.Length; i++)
                Assert.That(fused.O[i], Is.EqualTo(general.O[i]).Within(2e-5f), $"O[{i}]");
            for (int i = 0; i < fused.Lse.Length; i++)
                Assert.That(fused.Lse[i], Is.EqualTo(general.Lse[i]).Within(2e-5f), $"LSE[{i}]");
        }
        finally
        {
            FlashAttentionKernel.UseFusedForward = true;
        }
    }

    [Test]
    public void GradientsMatchFloat64FiniteDifferences()
    {
        var shape = new AttentionShape(1, 1, 5, 7, 3);
        var options = new FlashAttentionOptions { Causal = true, Scale = 0.8, QueryBlockSize = 16, KeyBlockSize = 16, DropoutProbability = 0.3, DropoutSeed = 7 };
        var rng = new Random(31);
        var (q, k, v, dO) = Inputs(shape, rng);
        var run = Flash(shape, q, k, v, dO, options);
        foreach (var (x, grad, name) in new[] { (q, run.Dq, "dQ"), (k, run.Dk, "dK"), (v, run.Dv, "dV") })
            for (int i = 0; i < x.Length; i++)
            {
                float saved = x[i];
                const float h = 1e-3f;
                float up = saved + h, down = saved - h;
                x[i] = up;
                double plus = Loss(shape, q, k, v, dO, options);
                x[i] = down;
                double minus = Loss(shape, q, k, v, dO, options);
                x[i] = saved;
                double fd = (plus - minus) / ((double)up - down);
                Assert.That(grad[i], Is.EqualTo(fd).Within(2e-4), $"{name}[{i}]");
            }
    }

    private static double Loss(AttentionShape shape, float[] q, float[] k, float[] v, float[] dO, FlashAttentionOptions options)
    {
        var o = NaiveAttention.Run<double>(shape, q, k, v, null, options).O;
        return o.Select((x, i) => x * dO[i]).Sum();
    }

    [Test]
    public void DropoutKeepsOneMinusPAndBackwardRegeneratesTheForwardMask()
    {
        const double p = 0.17;
        long kept = 0, total = 0;
        for (int bh = 0; bh < 2; bh++)
            for (int i = 0; i < 300; i++)
                for (int j = 0; j < 300; j++, total++)
                    kept += FlashAttentionKernel.DropoutKeeps(42, bh, i, j, p) ? 1 : 0;
        Assert.That(kept / (double)total / (1 - p), Is.EqualTo(1.0).Within(0.02));
        Assert.That(FlashAttentionKernel.DropoutKeeps(42, 0, 1, 2, p), Is.EqualTo(FlashAttentionKernel.DropoutKeeps(42, 0, 1, 2, p)));

        // Forward output and all gradients equal the float64 reference built from the same (seed, b·H + h, i, j) mask.
        var shape = new AttentionShape(2, 1, 150, 140, 32);
        var options = new FlashAttentionOptions { DropoutProbability = p, DropoutSeed = 42, Causal = true };
        CheckAgainstReference(shape, options, seed: 37);
        var (q, k, v, _) = Inputs(shape, new Random(37));
        var other = Flash(shape, q, k, v, null, new FlashAttentionOptions { DropoutProbability = p, DropoutSeed = 43, Causal = true });
        var same = Flash(shape, q, k, v, null, options);
        Assert.That(other.O, Is.Not.EqualTo(same.O));
        Assert.That(other.Lse, Is.EqualTo(same.Lse), "dropout does not change the softmax statistics");
    }

    private static (float[] Q, float[] K, float[] V, float[] DO) Inputs(AttentionShape s, Random rng) =>
        (NaiveAttention.Random(rng, s.QueryElements), NaiveAttention.Random(rng, s.KeyElements),
         NaiveAttention.Random(rng, s.KeyElements), NaiveAttention.Random(rng, s.QueryElements));

    private static Run CheckAgainstReference(AttentionShape shape, FlashAttentionOptions options, int seed)
    {
        var (q, k, v, dO) = Inputs(shape, new Random(seed));
        var run = Flash(shape, q, k, v, dO, options);
        var exact = NaiveAttention.Run<double>(shape, q, k, v, dO, options);
        var single = NaiveAttention.Run<float>(shape, q, k, v, dO, options);
        void Check(string name, float[] actual, double[] reference, float[] naive)
        {
            Assert.That(actual.Any(float.IsNaN), Is.False, $"{name} has NaN");
            double err = NaiveAttention.MaxError(actual, reference);
            double naiveErr = NaiveAttention.MaxError(naive, reference);
            Assert.That(err, Is.LessThanOrEqualTo(2 * naiveErr + 1e-6), $"{name}: flash error {err:E2}, naive fp32 error {naiveErr:E2}");
        }
        Check("O", run.O, exact.O, single.O);
        Check("LSE", run.Lse, exact.Lse, single.Lse);
        Check("dQ", run.Dq, exact.Dq, single.Dq);
        Check("dK", run.Dk, exact.Dk, single.Dk);
        Check("dV", run.Dv, exact.Dv, single.Dv);
        return run;
    }
}
