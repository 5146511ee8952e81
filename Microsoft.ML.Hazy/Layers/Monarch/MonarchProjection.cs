using Microsoft.ML.Hazy.Kernels.Monarch;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers.Monarch;

/// <summary>
/// The Monarch factors closest to a dense matrix in Frobenius norm, in the layout of <see cref="MonarchMultiply.Bmm"/>.
/// Dispose it to free the factors.
/// </summary>
public sealed class MonarchProjection : IDisposable
{
    private MonarchProjection(Tensor w1, Tensor w2, double squaredError)
    {
        BlockDiagonal1 = w1;
        BlockDiagonal2 = w2;
        SquaredError = squaredError;
    }

    /// <summary>First factor w1, shape (nblocks1, nblocks2·rank, in/nblocks1).</summary>
    public Tensor BlockDiagonal1 { get; }

    /// <summary>Second factor w2, shape (nblocks2, out/nblocks2, nblocks1·rank).</summary>
    public Tensor BlockDiagonal2 { get; }

    /// <summary>‖A − M‖²_F, which equals the sum of the discarded squared singular values of all blocks.</summary>
    public double SquaredError { get; }

    /// <summary>‖A − M‖_F.</summary>
    public double Error => Math.Sqrt(SquaredError);

    /// <summary>The projected matrix M (out, in) = the product of the factors applied to the identity, transposed.</summary>
    public Tensor ToDense()
    {
        using var scope = NewDisposeScope();
        long n = BlockDiagonal1.shape[0] * BlockDiagonal1.shape[2];
        var eye = torch.eye(n, dtype: BlockDiagonal1.dtype, device: BlockDiagonal1.device);
        return MonarchMultiply.Bmm(eye, BlockDiagonal1, BlockDiagonal2).t().contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Projects <paramref name="dense"/> (out, in) on Monarch matrices with <paramref name="nblocks1"/> input blocks,
    /// <paramref name="nblocks2"/> output blocks and rank <paramref name="rank"/> per block. Entry
    /// A[s·nblocks2 + l, k·(in/nblocks1) + p] belongs to block (k, l); each block is an independent best rank-r problem
    /// solved by a truncated SVD (Eckart–Young), all blocks in one batched <c>linalg.svd</c> in float64.
    /// </summary>
    /// <param name="dense">The matrix (out, in); nblocks1 must divide in and nblocks2 must divide out.</param>
    /// <param name="nblocks1">Blocks of the first factor (input side).</param>
    /// <param name="nblocks2">Blocks of the second factor (output side).</param>
    /// <param name="rank">Rank of each of the nblocks1·nblocks2 sub-blocks; 1 is the paper's Monarch.</param>
    public static MonarchProjection Project(Tensor dense, int nblocks1, int nblocks2, int rank = 1)
    {
        ArgumentNullException.ThrowIfNull(dense);
        if (dense.shape.Length != 2)
            throw new ArgumentException($"Project expects a 2-D (out, in) matrix; got shape [{string.Join(", ", dense.shape)}].", nameof(dense));
        long rows = dense.shape[0], cols = dense.shape[1];
        if (nblocks1 <= 0 || cols % nblocks1 != 0)
            throw new ArgumentOutOfRangeException(nameof(nblocks1), nblocks1, $"nblocks1 must be a positive divisor of the input width {cols}.");
        if (nblocks2 <= 0 || rows % nblocks2 != 0)
            throw new ArgumentOutOfRangeException(nameof(nblocks2), nblocks2, $"nblocks2 must be a positive divisor of the output width {rows}.");
        if (rank <= 0)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, "rank must be positive.");
        if (dense.is_complex())
            throw new NotSupportedException(
                "Complex matrices are not projected: TorchSharp 0.107's linalg.svd crashes on complex input. Project the real form [[Re, −Im], [Im, Re]] with 2·nblocks1 input blocks and 2·rank instead; it is exact exactly when the complex projection is.");
        return Project(dense, nblocks1, (long)nblocks2 * rank, nblocks2, (long)nblocks1 * rank);
    }

    /// <summary>
    /// The general projection on factors w1 (k, q, cols/k) and w2 (l, rows/l, r) with k·q = l·r: middle index
    /// f = k·q_count + q = r·l_count + l joins w1[k, q, :] and w2[l, :, r] into block (k, l), so block (k, l) is a sum
    /// of as many rank-one terms as it has such f, with parameters no other block shares. Each block's best
    /// approximation of that rank is its truncated SVD; blocks with no f are zero.
    /// </summary>
    internal static MonarchProjection Project(Tensor dense, long k, long q, long l, long r)
    {
        long rows = dense.shape[0], cols = dense.shape[1];
        if (cols % k != 0 || rows % l != 0 || k * q != l * r)
            throw new ArgumentException($"Monarch shapes do not fit a {rows}×{cols} matrix: k {k}, q {q}, l {l}, r {r}.");
        long p = cols / k, s = rows / l, middle = k * q, ranks = Math.Min(s, p);

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var work = dense.detach().to(ScalarType.Float64);
        // A[s·L + l, k·P + p] → blocks (k, l) of shape (s, p)
        var blocks = work.reshape(s, l, k, p).permute(2, 1, 0, 3);
        var (u, sigma, vh) = linalg.svd(blocks, fullMatrices: false);
        var root = sigma.sqrt();
        var right = (vh * root.unsqueeze(-1)).reshape(k * l * ranks, p);                     // √σ_j v_jᴴ
        var left = (u * root.unsqueeze(-2)).permute(0, 1, 3, 2).reshape(k * l * ranks, s);  // √σ_j u_j

        // Term j of block (k, l) for f = k·q + q' with l = f mod L: j = (f − k·q) / L.
        var index = new long[middle];
        var valid = new float[middle];
        var discarded = Enumerable.Repeat(1.0, (int)(k * l * ranks)).ToArray();
        for (long f = 0; f < middle; f++)
        {
            long kf = f / q, lf = f % l, j = (f - kf * q) / l;
            bool inRange = j < ranks;
            index[f] = inRange ? (kf * l + lf) * ranks + j : 0;
            valid[f] = inRange ? 1 : 0;
            if (inRange)
                discarded[index[f]] = 0;
        }
        var indexTensor = tensor(index, device: dense.device);
        var mask = tensor(valid, device: dense.device).to(ScalarType.Float64).unsqueeze(1);
        var w1 = (right.index_select(0, indexTensor) * mask).reshape(k, q, p);
        var w2 = (left.index_select(0, indexTensor) * mask).reshape(r, l, s).permute(1, 2, 0);
        using var two = 2.ToScalar();
        var sigmaSquared = sigma.reshape(-1).pow(two);
        double squaredError = (sigmaSquared * tensor(discarded, device: dense.device)).sum().item<double>();
        w1 = w1.to(dense.dtype).contiguous();
        w2 = w2.to(dense.dtype).contiguous();
        return new MonarchProjection(w1.MoveToOuterDisposeScope(), w2.MoveToOuterDisposeScope(), squaredError);
    }

    /// <summary>Frees the factors.</summary>
    public void Dispose()
    {
        BlockDiagonal1.Dispose();
        BlockDiagonal2.Dispose();
    }
}
