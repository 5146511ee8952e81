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
        long k = nblocks1, p = cols / nblocks1, l = nblocks2, s = rows / nblocks2;
        long kept = Math.Min(rank, Math.Min(s, p));

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var work = dense.detach().to(ScalarType.Float64);
        // A[s·L + l, k·P + p] → blocks (k, l) of shape (s, p)
        var blocks = work.reshape(s, l, k, p).permute(2, 1, 0, 3);
        var (u, sigma, vh) = linalg.svd(blocks, fullMatrices: false);
        double squaredError = sigma.narrow(-1, kept, sigma.shape[^1] - kept).square().sum().item<double>();
        var root = sigma.narrow(-1, 0, kept).sqrt();
        var left = u.narrow(-1, 0, kept) * root.unsqueeze(-2);        // (k, l, s, c)
        var right = vh.narrow(-2, 0, kept) * root.unsqueeze(-1);      // (k, l, c, p)
        if (kept < rank)
        {
            left = nn.functional.pad(left, new long[] { 0, rank - kept });
            right = nn.functional.pad(right, new long[] { 0, 0, 0, rank - kept });
        }
        // w1[k, j·L + l, :] = right[k, l, j, :];  w2[l, :, k·rank + j] = left[k, l, :, j]
        var w1 = right.permute(0, 2, 1, 3).reshape(k, rank * l, p);
        var w2 = left.permute(1, 2, 0, 3).reshape(l, s, k * rank);
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
