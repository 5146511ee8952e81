using System.Collections.Concurrent;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Kernels.Attention;

/// <summary>
/// The attention conformance suite: every attention provider (<see cref="KernelProviderCases.Attention"/>: the libtorch
/// reference, the CPU kernel at each instruction set, AVX-512's general forward) must reproduce the research report's
/// hand-checked vectors and stay within twice the naive float32 error of the float64 reference, for O, the log-sum-exp
/// and all gradients, under every mask, tile size, dropout and shift. Providers get tensors and run their own autograd.
/// </summary>
[TestFixtureSource(typeof(KernelProviderCases), nameof(KernelProviderCases.Attention))]
public sealed class AttentionConformanceTests(KernelProviderCase provider)
{
    private sealed record Run(float[] O, float[] Lse, float[] Dq, float[] Dk, float[] Dv);

    private readonly IAttentionKernels _kernels = provider.Provider.Attention!;

    // O, LSE and (given dO) the gradients of ⟨dO, O⟩ through the provider, on CPU float32 tensors.
    private Run Flash(AttentionShape s, float[] q, float[] k, float[] v, float[]? dO, FlashAttentionOptions options)
    {
        using var scope = NewDisposeScope();
        var qt = tensor(q, new long[] { s.Batch, s.Heads, s.QueryLength, s.HeadDim }).requires_grad_(dO is not null);
        var kt = tensor(k, new long[] { s.Batch, s.Heads, s.KeyLength, s.HeadDim }).requires_grad_(dO is not null);
        var vt = tensor(v, new long[] { s.Batch, s.Heads, s.KeyLength, s.HeadDim }).requires_grad_(dO is not null);
        var (o, lse) = _kernels.Attention(qt, kt, vt, options, withLogSumExp: true);
        var dq = new float[s.QueryElements];
        var dk = new float[s.KeyElements];
        var dv = new float[s.KeyElements];
        if (dO is not null)
        {
            var grads = autograd.grad([o], [qt, kt, vt], [tensor(dO, o.shape)]);
            dq = grads[0].data<float>().ToArray();
            dk = grads[1].data<float>().ToArray();
            dv = grads[2].data<float>().ToArray();
        }
        return new Run(o.detach().data<float>().ToArray(), lse!.data<float>().ToArray(), dq, dk, dv);
    }

    // The float64 and float32 naive references depend on the inputs and masks only, not on the provider: computed once.
    private static readonly ConcurrentDictionary<string, (NaiveAttention.Result<double> Exact, NaiveAttention.Result<float> Single)> References = new();

    // Research report §2.9: d = 4, τ = 1/2, hand-checkable O, LSE and gradients.
    private static readonly float[] PaperQ = [1, 0, 2, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 2, 1, 1];
    private static readonly float[] PaperK = [2, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 2, 1];
    private static readonly float[] PaperV2 = [1, 0, 0, 1, 1, 1, 2, 1];

    [Test]
    public void PaperVectorsFullAndCausal() => CheckPaperVectors(FlashAttentionOptions.DefaultBlockSize, FlashAttentionOptions.DefaultBlockSize);

    private static IEnumerable<TestCaseData> PaperTileCases() =>
        from tiles in new[] { (1, 1), (2, 2), (1, 3), (3, 2) }
        select new TestCaseData(tiles.Item1, tiles.Item2);

    // Research report §2.9: the tiled online softmax with (Br, Bc) ∈ {(1,1), (2,2), (1,3), (3,2)} reproduces the report's
    // O and LSE (and here also its gradients and causal values); at AVX-512 the fused step and the general path both
    // (two providers).
    [TestCaseSource(nameof(PaperTileCases))]
    public void PaperVectorsWithTheReportsSmallTiles(int queryBlock, int keyBlock) => CheckPaperVectors(queryBlock, keyBlock);

    private void CheckPaperVectors(int queryBlock, int keyBlock)
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
        var full = Flash(shape, PaperQ, PaperK, v, dO, new FlashAttentionOptions { Scale = 0.5, QueryBlockSize = queryBlock, KeyBlockSize = keyBlock });
        AssertClose(Columns(full.O, 2), [1.269873, 0.842940, 1, 0.811230, 1, 0.573067, 1, 0.811230], 2e-6);
        AssertClose(full.Lse, [2.851129, 2.167224, 2.351129, 2.667224], 2e-6);
        AssertClose(Columns(full.Dv, 2), [.013283, .409251, .466844, .776629, .283156, .307363, .736717, .506756], 2e-6);
        AssertClose(full.Dq, [.034729, -.067054, .077328, .067054, -.270638, -.172193, .289694, .172193, 0, .078530, -.078530, -.078530, -.135319, -.202807, .261558, .202807], 2e-6);
        AssertClose(full.Dk, [.045003, -.306272, -.139698, -.076568, -.033527, -.193005, -.369410, -.047709, -.055277, .071268, -.057102, .017817, .043801, .428009, .566210, .106460], 2e-6);

        var causal = Flash(shape, PaperQ, PaperK, v, null, new FlashAttentionOptions { Scale = 0.5, Causal = true, QueryBlockSize = queryBlock, KeyBlockSize = keyBlock });
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

    [Test]
    public void EveryInstructionSetMatchesTheReference()
    {
        var shape = new AttentionShape(2, 1, 133, 101, 40);
        CheckAgainstReference(shape, new FlashAttentionOptions { Causal = true }, seed: 29);
    }

    private static IEnumerable<TestCaseData> TileCases() =>
        from tiles in new[] { (16, 16), (32, 48), (48, 96), (256, 256) }
        select new TestCaseData(tiles.Item1, tiles.Item2);

    // The fused AVX-512 forward works in strips of 64 keys: tiles narrower or wider than a strip, or ending mid-strip,
    // with key padding and causal cuts inside a strip, must match the float64 reference like the default tiles, as must
    // the general path (AVX2, scalar).
    [TestCaseSource(nameof(TileCases))]
    public void TileSizesAcrossTheKeyStripMatchTheReference(int queryBlock, int keyBlock)
    {
        var shape = new AttentionShape(2, 2, 131, 203, 40);
        CheckAgainstReference(shape, new FlashAttentionOptions
        {
            Causal = true, KeyLengths = [203, 77], QueryBlockSize = queryBlock, KeyBlockSize = keyBlock,
        }, seed: 31);
    }

    // Dropout in the fused step multiplies the probabilities after the row statistics, as the general path does: same
    // mask, same output up to rounding. Every provider must agree with the CPU kernel's general path that way.
    [Test]
    public void FusedAndGeneralForwardAgreeWithDropoutAndMasks()
    {
        var shape = new AttentionShape(2, 3, 150, 170, 48);
        var (q, k, v, _) = Inputs(shape, new Random(37));
        var options = new FlashAttentionOptions { Causal = true, KeyLengths = [170, 90], DropoutProbability = 0.3, DropoutSeed = 5 };
        var fused = Flash(shape, q, k, v, null, options);
        IAttentionKernels generalPath = new CpuSimdKernels(new CpuKernelOptions { FusedAttentionForward = false });
        using var qt = tensor(q, new long[] { 2, 3, 150, 48 });
        using var kt = tensor(k, new long[] { 2, 3, 170, 48 });
        using var vt = tensor(v, new long[] { 2, 3, 170, 48 });
        var (o, lse) = generalPath.Attention(qt, kt, vt, options, withLogSumExp: true);
        var general = new Run(o.data<float>().ToArray(), lse!.data<float>().ToArray(), [], [], []);
        o.Dispose();
        lse.Dispose();
        for (int i = 0; i < fused.O.Length; i++)
            Assert.That(fused.O[i], Is.EqualTo(general.O[i]).Within(2e-5f), $"O[{i}]");
        for (int i = 0; i < fused.Lse.Length; i++)
            Assert.That(fused.Lse[i], Is.EqualTo(general.Lse[i]).Within(2e-5f), $"LSE[{i}]");
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

    // The forward output and all gradients equal the float64 reference that drops exactly the scores DropoutKeeps
    // rejects for (seed, b·H + h, i, j): the backward regenerates the forward's mask. Another seed changes O but not the
    // softmax statistics; the same seed gives the same O bit for bit.
    [Test]
    public void DropoutEqualsNaiveAttentionWithTheSameKeepMask()
    {
        const double p = 0.17;
        var shape = new AttentionShape(2, 1, 150, 140, 32);
        var options = new FlashAttentionOptions { DropoutProbability = p, DropoutSeed = 42, Causal = true };
        var run = CheckAgainstReference(shape, options, seed: 37);
        var (q, k, v, _) = Inputs(shape, new Random(37));
        var again = Flash(shape, q, k, v, null, options);
        Assert.That(again.O, Is.EqualTo(run.O));
        var noDropout = Flash(shape, q, k, v, null, new FlashAttentionOptions { Causal = true });
        var other = Flash(shape, q, k, v, null, new FlashAttentionOptions { DropoutProbability = p, DropoutSeed = 43, Causal = true });
        double changed = run.O.Zip(other.O, (a, b) => Math.Abs(a - b)).Max();
        double changedFromNone = run.O.Zip(noDropout.O, (a, b) => Math.Abs(a - b)).Max();
        Assert.That(changed, Is.GreaterThan(0.1), "another seed drops other scores");
        Assert.That(changedFromNone, Is.GreaterThan(0.1), "dropout changes O");
        for (int i = 0; i < run.Lse.Length; i++)
            Assert.That(other.Lse[i], Is.EqualTo(noDropout.Lse[i]).Within(1e-5), "dropout does not change the softmax statistics");
    }

    private static IEnumerable<TestCaseData> OddTileCases() =>
        from tiles in new[] { (1, 1), (1, 3), (3, 2), (5, 7), (7, 5), (17, 33), (3, 64), (64, 3) }
        select new TestCaseData(tiles.Item1, tiles.Item2);

    // Tiles of any size from 1 up: lengths 23 × 29 are not multiples of any tile here but 1, head size 7 is padded, and
    // the causal cut and key padding fall inside tiles.
    [TestCaseSource(nameof(OddTileCases))]
    public void OddTileSizesMatchTheReference(int queryBlock, int keyBlock)
    {
        var shape = new AttentionShape(2, 2, 23, 29, 7);
        CheckAgainstReference(shape, new FlashAttentionOptions { QueryBlockSize = queryBlock, KeyBlockSize = keyBlock }, seed: 43);
        CheckAgainstReference(shape, new FlashAttentionOptions
        {
            Causal = true, KeyLengths = [29, 12], QueryBlockSize = queryBlock, KeyBlockSize = keyBlock,
        }, seed: 47);
    }

    [Test]
    public void BlockMaskWithOddBlockSizesMatchesTheReference()
    {
        var rng = new Random(53);
        var blocks = new bool[8, 6];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 6; j++)
                blocks[i, j] = rng.NextDouble() < 0.6;
        var shape = new AttentionShape(1, 2, 23, 29, 16);
        CheckAgainstReference(shape, new FlashAttentionOptions { BlockMask = new BlockSparseMask(blocks, 3, 5) }, seed: 59);
    }

    private static IEnumerable<TestCaseData> ShiftCases() =>
        from tiles in new[] { (64, 64), (3, 2), (16, 16) }
        select new TestCaseData(tiles.Item1, tiles.Item2);

    // Softmax-shift invariance: Q and K get one more column, a_i in Q's row i and 1 in every key, and V a zero column, so
    // that every score of row i moves by c_i = τ·a_i, up to ±1500. O must not change and LSE must move by c_i exactly; a
    // softmax that did not subtract the row maximum would overflow (c > 88) or underflow to 0/0 (c < −104). The tolerance
    // is twice the error of textbook fp32 attention on the same shifted inputs, against the float64 unshifted reference.
    [TestCaseSource(nameof(ShiftCases))]
    public void AddingAConstantToEveryScoreOfARowChangesNothing(int queryBlock, int keyBlock)
    {
        const int d = 7, lq = 37, lk = 41;
        const double tau = 0.375; // exact in float, so c_i is the same for the kernel and the reference
        var plain = new AttentionShape(1, 2, lq, lk, d);
        var shifted = new AttentionShape(1, 2, lq, lk, d + 1);
        var (q, k, v, _) = Inputs(plain, new Random(61));
        double[] offsets = [0, 30, -30, 200, -200, 1500, -1500];
        var shifts = new double[plain.RowCount];
        var q1 = new float[shifted.QueryElements];
        var k1 = new float[shifted.KeyElements];
        var v1 = new float[shifted.KeyElements];
        for (int row = 0; row < plain.RowCount; row++)
        {
            float a = (float)(offsets[row % offsets.Length] / tau);
            shifts[row] = tau * a;
            Array.Copy(q, row * d, q1, row * (d + 1), d);
            q1[row * (d + 1) + d] = a;
        }
        for (int key = 0; key < 2 * lk; key++)
        {
            Array.Copy(k, key * d, k1, key * (d + 1), d);
            k1[key * (d + 1) + d] = 1;
            Array.Copy(v, key * d, v1, key * (d + 1), d);
        }
        var options = new FlashAttentionOptions { Scale = tau, QueryBlockSize = queryBlock, KeyBlockSize = keyBlock };
        var run = Flash(shifted, q1, k1, v1, null, options);
        var exact = NaiveAttention.Run<double>(plain, q, k, v, null, options);
        var naive = NaiveAttention.Run<float>(shifted, q1, k1, v1, null, options);
        double OutputError(float[] o)
        {
            double worst = 0;
            for (int row = 0; row < plain.RowCount; row++)
            {
                Assert.That(o[row * (d + 1) + d], Is.EqualTo(0f), "V's zero column");
                for (int c = 0; c < d; c++)
                    worst = Math.Max(worst, Math.Abs(o[row * (d + 1) + c] - exact.O[row * d + c]));
            }
            return worst;
        }
        double LseError(float[] lse) => Enumerable.Range(0, lse.Length).Max(row => Math.Abs(lse[row] - shifts[row] - exact.Lse[row]));
        Assert.That(run.O.Concat(run.Lse).All(float.IsFinite), Is.True);
        double naiveO = OutputError(naive.O), naiveLse = LseError(naive.Lse);
        Assert.That(OutputError(run.O), Is.LessThanOrEqualTo(2 * naiveO + 1e-6), $"O; naive fp32 error {naiveO:E2}");
        Assert.That(LseError(run.Lse), Is.LessThanOrEqualTo(2 * naiveLse + 1e-6), $"LSE − c; naive fp32 error {naiveLse:E2}");
    }

    private static IEnumerable<TestCaseData> OrderCases() =>
        from keyBlock in new[] { 3, 16, 64 }
        select new TestCaseData(keyBlock);

    // Key-tile order invariance: the kernel visits key tiles in index order, so reordering whole tiles of K and V (no
    // mask) makes it process them in another order. The later tiles' keys are larger, so in the original order the row
    // maximum moves at almost every tile (rescaling each time) and in reverse order it is set by the first tile. O, LSE
    // and dQ must agree, and dK, dV must follow the keys, to float error: each run lies within twice the naive fp32
    // error of the float64 reference, so the two lie within four times of each other.
    [TestCaseSource(nameof(OrderCases))]
    public void KeyTileOrderDoesNotChangeTheResult(int keyBlock)
    {
        const int tiles = 8, d = 16;
        int lk = tiles * keyBlock;
        var shape = new AttentionShape(1, 2, 45, lk, d);
        var rng = new Random(67);
        var (q, k, v, dO) = Inputs(shape, rng);
        for (int h = 0; h < 2; h++)
            for (int key = 0; key < lk; key++)
                for (int c = 0; c < d; c++)
                    k[(h * lk + key) * d + c] *= 1 + 0.4f * (key / keyBlock);
        var options = new FlashAttentionOptions { KeyBlockSize = keyBlock, QueryBlockSize = 16 };
        var single = NaiveAttention.Run<float>(shape, q, k, v, dO, options);
        var exact = NaiveAttention.Run<double>(shape, q, k, v, dO, options);
        var baseline = Flash(shape, q, k, v, dO, options);
        var orders = new[] { Enumerable.Range(0, tiles).Reverse().ToArray(), Enumerable.Range(0, tiles).OrderBy(_ => rng.Next()).ToArray() };
        foreach (var order in orders)
        {
            // Key j of tile order[t] moves to position t·Bc + (j mod Bc).
            var position = new int[lk];
            for (int t = 0; t < tiles; t++)
                for (int j = 0; j < keyBlock; j++)
                    position[order[t] * keyBlock + j] = t * keyBlock + j;
            var k2 = new float[k.Length];
            var v2 = new float[v.Length];
            for (int h = 0; h < 2; h++)
                for (int key = 0; key < lk; key++)
                {
                    Array.Copy(k, (h * lk + key) * d, k2, (h * lk + position[key]) * d, d);
                    Array.Copy(v, (h * lk + key) * d, v2, (h * lk + position[key]) * d, d);
                }
            var moved = Flash(shape, q, k2, v2, dO, options);
            var dkBack = new float[k.Length];
            var dvBack = new float[v.Length];
            for (int h = 0; h < 2; h++)
                for (int key = 0; key < lk; key++)
                {
                    Array.Copy(moved.Dk, (h * lk + position[key]) * d, dkBack, (h * lk + key) * d, d);
                    Array.Copy(moved.Dv, (h * lk + position[key]) * d, dvBack, (h * lk + key) * d, d);
                }
            string what = "order " + string.Join(",", order);
            AssertAgree(moved.O, baseline.O, 4 * NaiveAttention.MaxError(single.O, exact.O) + 2e-6, "O, " + what);
            AssertAgree(moved.Lse, baseline.Lse, 4 * NaiveAttention.MaxError(single.Lse, exact.Lse) + 2e-6, "LSE, " + what);
            AssertAgree(moved.Dq, baseline.Dq, 4 * NaiveAttention.MaxError(single.Dq, exact.Dq) + 2e-6, "dQ, " + what);
            AssertAgree(dkBack, baseline.Dk, 4 * NaiveAttention.MaxError(single.Dk, exact.Dk) + 2e-6, "dK, " + what);
            AssertAgree(dvBack, baseline.Dv, 4 * NaiveAttention.MaxError(single.Dv, exact.Dv) + 2e-6, "dV, " + what);
        }
    }

    private static void AssertAgree(float[] actual, float[] expected, double tolerance, string what)
    {
        double worst = actual.Zip(expected, (a, b) => Math.Abs(a - b)).Max();
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), what);
    }

    private static (float[] Q, float[] K, float[] V, float[] DO) Inputs(AttentionShape s, Random rng) =>
        (NaiveAttention.Random(rng, s.QueryElements), NaiveAttention.Random(rng, s.KeyElements),
         NaiveAttention.Random(rng, s.KeyElements), NaiveAttention.Random(rng, s.QueryElements));

    private static string MaskKey(BlockSparseMask? mask) => mask is null ? "-"
        : $"{mask.QueryBlockSize}x{mask.KeyBlockSize}:" + string.Concat(from i in Enumerable.Range(0, mask.QueryBlocks) from j in Enumerable.Range(0, mask.KeyBlocks) select mask[i, j] ? '1' : '0');

    private Run CheckAgainstReference(AttentionShape shape, FlashAttentionOptions options, int seed)
    {
        var (q, k, v, dO) = Inputs(shape, new Random(seed));
        var run = Flash(shape, q, k, v, dO, options);
        string key = $"{shape} {seed} {options.Scale} {options.Causal} {string.Join(",", options.KeyLengths ?? [])} {MaskKey(options.BlockMask)} {options.DropoutProbability} {options.DropoutSeed}";
        var (exact, single) = References.GetOrAdd(key, _ => (NaiveAttention.Run<double>(shape, q, k, v, dO, options), NaiveAttention.Run<float>(shape, q, k, v, dO, options)));
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

    // Second order: ∇_{q,k,v} Σ (∂⟨W, O⟩/∂q)² with create_graph: true through the provider (float32) against the same
    // through the libtorch reference in float64; the error must stay within twice the reference's own float32 error
    // plus 1e-6 (relative to the largest value), the bound the first-order checks use. Masks and dropout included.
    [TestCase(false, 0.0)]
    [TestCase(true, 0.2)]
    public void SecondOrderGradientsMatchTheReference(bool causal, double dropout)
    {
        using var scope = NewDisposeScope();
        var shape = new AttentionShape(2, 2, 37, 45, 16);
        var options = new FlashAttentionOptions { Causal = causal, KeyLengths = [45, 30], DropoutProbability = dropout, DropoutSeed = 9 };
        var g = new Generator(71);
        var q = randn([2, 2, 37, 16], generator: g);
        var k = randn([2, 2, 45, 16], generator: g);
        var v = randn([2, 2, 45, 16], generator: g);
        var w = randn([2, 2, 37, 16], generator: g);
        Tensor[] SecondOrder(IAttentionKernels kernels, ScalarType type)
        {
            var leaves = new[] { q, k, v }.Select(t => t.to(type).detach().requires_grad_()).ToArray();
            var (o, _) = kernels.Attention(leaves[0], leaves[1], leaves[2], options, withLogSumExp: false);
            var loss = o.mul(w.to(type)).sum();
            var dq = autograd.grad([loss], [leaves[0]], retain_graph: true, create_graph: true)[0];
            var penalty = dq.pow(2.ToScalar()).sum();
            return autograd.grad([penalty], leaves).Select(t => t.to(ScalarType.Float64)).ToArray();
        }
        var actual = SecondOrder(_kernels, ScalarType.Float32);
        var exact = SecondOrder(KernelRegistry.Reference.Attention!, ScalarType.Float64);
        var single = SecondOrder(KernelRegistry.Reference.Attention!, ScalarType.Float32);
        string[] names = ["q", "k", "v"];
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
