using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Layers.Monarch;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Monarch;

public sealed class MonarchProjectionTests
{
    private static double SquaredResidual(Tensor a, Tensor m)
    {
        using var d = (a - m).abs().square().sum();
        return d.to(ScalarType.Float64).item<double>();
    }

    private static double SquaredNorm(Tensor a)
    {
        using var zero = zeros_like(a);
        return SquaredResidual(a, zero);
    }

    private static IEnumerable<TestCaseData> Cases()
    {
        // (out, in, nblocks1, nblocks2, rank)
        yield return new TestCaseData(16, 16, 4, 4, 1);
        yield return new TestCaseData(36, 36, 6, 6, 1);
        yield return new TestCaseData(16, 16, 2, 2, 4);
        yield return new TestCaseData(8, 12, 3, 2, 1);
        yield return new TestCaseData(30, 12, 4, 5, 2);
        yield return new TestCaseData(24, 40, 5, 3, 3);
    }

    private static (Tensor W1, Tensor W2) RandomFactors(int rows, int cols, int nblocks1, int nblocks2, int rank)
    {
        var w1 = randn(nblocks1, nblocks2 * rank, cols / nblocks1, dtype: ScalarType.Float64);
        var w2 = randn(nblocks2, rows / nblocks2, nblocks1 * rank, dtype: ScalarType.Float64);
        return (w1, w2);
    }

    [TestCaseSource(nameof(Cases))]
    public void ExactOnMonarchMatrices(int rows, int cols, int nblocks1, int nblocks2, int rank)
    {
        manual_seed(21);
        var (w1, w2) = RandomFactors(rows, cols, nblocks1, nblocks2, rank);
        using var _1 = w1;
        using var _2 = w2;
        using var eyeN = eye(cols, dtype: ScalarType.Float64);
        using var monarch = MonarchMultiply.Bmm(eyeN, w1, w2).t().contiguous();
        using var projection = MonarchProjection.Project(monarch, nblocks1, nblocks2, rank);
        using var back = projection.ToDense();
        using var maxEntry = monarch.abs().max();
        Assert.That(MonarchLinearTests.MaxAbsDiff(back, monarch) / maxEntry.item<double>(), Is.LessThan(1e-4));
        Assert.That(projection.SquaredError, Is.LessThan(1e-8));

        using var single = monarch.to(ScalarType.Float32);
        using var p32 = MonarchProjection.Project(single, nblocks1, nblocks2, rank);
        using var back32 = p32.ToDense();
        Assert.That(back32.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(MonarchLinearTests.MaxAbsDiff(back32, monarch) / maxEntry.item<double>(), Is.LessThan(1e-4));
    }

    [TestCaseSource(nameof(Cases))]
    public void ErrorIsTheDiscardedSpectrumAndProjectionIsIdempotent(int rows, int cols, int nblocks1, int nblocks2, int rank)
    {
        manual_seed(4);
        using var a = randn(rows, cols, dtype: ScalarType.Float64);
        using var projection = MonarchProjection.Project(a, nblocks1, nblocks2, rank);
        using var m = projection.ToDense();
        Assert.That(SquaredResidual(a, m), Is.EqualTo(projection.SquaredError).Within(1e-9 * rows * cols));

        // Σ discarded σ² per block, computed one block at a time.
        int s = rows / nblocks2, p = cols / nblocks1;
        double discarded = 0;
        for (int k = 0; k < nblocks1; k++)
            for (int l = 0; l < nblocks2; l++)
            {
                using var block = a.index_select(0, arange(l, rows, nblocks2)).narrow(1, k * p, p);
                using var sv = linalg.svdvals(block);
                var values = sv.data<double>().ToArray();
                discarded += values.Skip(rank).Sum(v => v * v);
            }
        Assert.That(projection.SquaredError, Is.EqualTo(discarded).Within(1e-9 * rows * cols));
        Assert.That(projection.SquaredError, Is.GreaterThan(0));

        using var again = MonarchProjection.Project(m, nblocks1, nblocks2, rank);
        using var m2 = again.ToDense();
        Assert.That(MonarchLinearTests.MaxAbsDiff(m2, m), Is.LessThan(1e-9));
    }

    [Test]
    public void NoPerturbationOfTheFactorsLowersTheError()
    {
        manual_seed(6);
        using var a = randn(30, 12, dtype: ScalarType.Float64);
        using var projection = MonarchProjection.Project(a, 4, 5, 2);
        using var eye12 = eye(12, dtype: ScalarType.Float64);
        for (int trial = 0; trial < 50; trial++)
        {
            double scale = trial < 25 ? 1e-3 : 1e-1;
            using var w1 = projection.BlockDiagonal1 + randn_like(projection.BlockDiagonal1) * scale;
            using var w2 = projection.BlockDiagonal2 + randn_like(projection.BlockDiagonal2) * scale;
            using var m = MonarchMultiply.Bmm(eye12, w1, w2).t();
            Assert.That(SquaredResidual(a, m), Is.GreaterThanOrEqualTo(projection.SquaredError - 1e-10), $"trial {trial}");
        }
    }

    /// <summary>The real 2n form [[Re, −Im], [Im, Re]] of the column-permuted DFT of size n.</summary>
    private static Tensor RealFormOfDft(int n, int nblocks1, bool permuted)
    {
        int p = n / nblocks1;
        var real = new double[2 * n, 2 * n];
        for (int row = 0; row < n; row++)
            for (int col = 0; col < n; col++)
            {
                // A[:, k·P + j] = F[:, j·K + k] with K = nblocks1, P = n/K: every (k, l) block is rank one.
                int source = permuted ? (col % p) * nblocks1 + col / p : col;
                double angle = -2 * Math.PI * ((long)row * source % n) / n;
                double re = Math.Cos(angle), im = Math.Sin(angle);
                real[row, col] = re;
                real[row + n, col + n] = re;
                real[row, col + n] = -im;
                real[row + n, col] = im;
            }
        return tensor(real);
    }

    [TestCase(12, 3, 4)]
    [TestCase(15, 5, 3)]
    [TestCase(16, 4, 4)]
    [TestCase(42, 6, 7)]
    public void ColumnPermutedDftIsMonarch(int n, int nblocks1, int nblocks2)
    {
        // A complex rank-one block becomes a real rank-two block of the real form, with twice the input blocks.
        using var a = RealFormOfDft(n, nblocks1, permuted: true);
        using var projection = MonarchProjection.Project(a, 2 * nblocks1, nblocks2, 2);
        Assert.That(projection.SquaredError / (n * n), Is.LessThan(1e-20));
        using var back = projection.ToDense();
        Assert.That(MonarchLinearTests.MaxAbsDiff(back, a), Is.LessThan(1e-10));

        using var unpermuted = RealFormOfDft(n, nblocks1, permuted: false);
        using var other = MonarchProjection.Project(unpermuted, 2 * nblocks1, nblocks2, 2);
        Assert.That(other.SquaredError / (n * n), Is.GreaterThan(1e-3), "without the permutation the DFT is not Monarch");
    }

    [TestCase(64, 32, 4)]
    [TestCase(20, 32, 4)]
    [TestCase(10, 7, 3)]
    [TestCase(45, 30, 4)]
    [TestCase(16, 16, 2)]
    public void FromDenseRecoversAMonarchLayer(int inFeatures, int outFeatures, int nblocks)
    {
        manual_seed(9);
        using var layer = new MonarchLinear(inFeatures, outFeatures, nblocks);
        using var w = layer.ToDense();
        using var copy = MonarchLinear.FromDense(w, layer.Bias, nblocks);
        using var x = randn(7, inFeatures);
        using var y1 = layer.forward(x);
        using var y2 = copy.forward(x);
        Assert.That(MonarchLinearTests.MaxAbsDiff(y1, y2), Is.LessThan(1e-4));
    }

    /// <remarks>
    /// The optimum is computed without the projection's index arithmetic: the rank each block of the layer can reach is
    /// read off a random layer of the same shape, the true entries of a block are picked by the definition of padding
    /// (row o = s·nblocks + l, column i = k·⌈in/nblocks⌉ + p, both within the true widths), and the least error is the sum
    /// of the block's discarded squared singular values (Eckart–Young; blocks have disjoint parameters). The padded
    /// entries of a block are whole rows and whole columns, so projecting the zero-padded matrix gives exactly this optimum.
    /// </remarks>
    [TestCase(10, 14, 4)]
    [TestCase(14, 10, 4)]
    [TestCase(13, 7, 3)]
    [TestCase(21, 19, 2)]
    public void FromDenseIsOptimalOnTheTrueEntriesForIndivisibleWidths(int outFeatures, int inFeatures, int nblocks)
    {
        manual_seed(17);
        using var w = randn(outFeatures, inFeatures, dtype: ScalarType.Float64);
        using var layer = MonarchLinear.FromDense(w, null, nblocks);
        using var dense = layer.ToDense();
        double error = SquaredResidual(w, dense);

        using var probe = new MonarchLinear(inFeatures, outFeatures, nblocks, hasBias: false);
        using var probeDense = probe.ToDense();
        using var probe64 = probeDense.to(ScalarType.Float64);
        double probeScale = Math.Sqrt(SquaredNorm(probe64));
        int inBlock = (inFeatures + nblocks - 1) / nblocks;
        double optimum = 0;
        int blocksWithTerms = 0;
        for (int k = 0; k < nblocks; k++)
        {
            for (int l = 0; l < nblocks; l++)
            {
                var rows = Enumerable.Range(0, outFeatures).Where(o => o % nblocks == l).Select(o => (long)o).ToArray();
                var cols = Enumerable.Range(k * inBlock, inBlock).Where(i => i < inFeatures).Select(i => (long)i).ToArray();
                if (rows.Length == 0 || cols.Length == 0)
                    continue;
                using var rowIndex = tensor(rows);
                using var colIndex = tensor(cols);
                using var reachable = linalg.svdvals(probe64.index_select(0, rowIndex).index_select(1, colIndex));
                int rank = reachable.data<double>().Count(v => v > 1e-4 * probeScale);
                blocksWithTerms += rank > 0 ? 1 : 0;
                using var sigma = linalg.svdvals(w.index_select(0, rowIndex).index_select(1, colIndex));
                optimum += sigma.data<double>().Skip(rank).Sum(v => v * v);
            }
        }
        Assert.That(blocksWithTerms, Is.GreaterThan(0));
        // The factors are float32: each entry of the product is off by a few float32 roundings, d ≤ 1e-6·‖W‖ in all,
        // which moves the squared error by at most 2·√optimum·d + d².
        double d = 1e-6 * Math.Sqrt(SquaredNorm(w));
        Assert.That(error, Is.EqualTo(optimum).Within(2 * Math.Sqrt(optimum) * d + d * d));
    }

    [Test]
    public void BadBlockCountsAreRefused()
    {
        using var a = randn(12, 10);
        Assert.Throws<ArgumentOutOfRangeException>(() => MonarchProjection.Project(a, 3, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => MonarchProjection.Project(a, 2, 5));
        using var complex = view_as_complex(randn(4, 4, 2));
        Assert.Throws<NotSupportedException>(() => MonarchProjection.Project(complex, 2, 2));
    }
}
