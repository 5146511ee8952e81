using System.Numerics;

namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>
/// Which (query block, key block) tiles block-sparse FlashAttention computes (paper Algorithm 5): a tile that is
/// <see langword="false"/> acts as a score of −∞ for all its entries and costs nothing. The same mask applies to
/// every batch element and head. Its block sizes are the kernel's tile sizes.
/// </summary>
public sealed class BlockSparseMask
{
    private readonly bool[] _blocks;

    /// <summary>Creates a mask from a user-supplied (query block × key block) table.</summary>
    /// <param name="blocks">True where the tile is computed; <c>blocks[i, j]</c> covers queries i·queryBlockSize… and keys j·keyBlockSize….</param>
    /// <param name="queryBlockSize">Rows per query block, from 1 to 256 (best a multiple of 16: see <see cref="FlashAttentionOptions.QueryBlockSize"/>).</param>
    /// <param name="keyBlockSize">Keys per key block, from 1 to 256 (best a multiple of 16).</param>
    public BlockSparseMask(bool[,] blocks, int queryBlockSize = FlashAttentionOptions.DefaultBlockSize, int keyBlockSize = FlashAttentionOptions.DefaultBlockSize)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        FlashAttentionOptions.CheckBlockSize(queryBlockSize, nameof(queryBlockSize));
        FlashAttentionOptions.CheckBlockSize(keyBlockSize, nameof(keyBlockSize));
        QueryBlocks = blocks.GetLength(0);
        KeyBlocks = blocks.GetLength(1);
        QueryBlockSize = queryBlockSize;
        KeyBlockSize = keyBlockSize;
        _blocks = new bool[QueryBlocks * KeyBlocks];
        for (int i = 0; i < QueryBlocks; i++)
            for (int j = 0; j < KeyBlocks; j++)
                _blocks[i * KeyBlocks + j] = blocks[i, j];
    }

    /// <summary>The number of query blocks (rows of the table).</summary>
    public int QueryBlocks { get; }

    /// <summary>The number of key blocks (columns of the table).</summary>
    public int KeyBlocks { get; }

    /// <summary>Rows per query block.</summary>
    public int QueryBlockSize { get; }

    /// <summary>Keys per key block.</summary>
    public int KeyBlockSize { get; }

    /// <summary>Whether tile (<paramref name="queryBlock"/>, <paramref name="keyBlock"/>) is computed.</summary>
    public bool this[int queryBlock, int keyBlock] => _blocks[queryBlock * KeyBlocks + keyBlock];

    /// <summary>The fraction of tiles that are computed.</summary>
    public double Density => _blocks.Count(b => b) / (double)_blocks.Length;

    /// <summary>Every tile computed: the same result as dense attention.</summary>
    public static BlockSparseMask Dense(int queryLength, int keyLength, int blockSize = FlashAttentionOptions.DefaultBlockSize) =>
        Build(queryLength, keyLength, blockSize, (i, j) => true);

    /// <summary>
    /// The tiles on or below the block diagonal (bottom-right aligned when the lengths differ, like
    /// <see cref="FlashAttentionOptions.Causal"/>). Alone it is block-causal; with <see cref="FlashAttentionOptions.Causal"/> it is exactly causal.
    /// </summary>
    public static BlockSparseMask Causal(int queryLength, int keyLength, int blockSize = FlashAttentionOptions.DefaultBlockSize) =>
        Build(queryLength, keyLength, blockSize, (i, j) =>
        {
            long lastQuery = Math.Min((long)(i + 1) * blockSize, queryLength) - 1;
            return (long)j * blockSize <= lastQuery + keyLength - queryLength;
        });

    /// <summary>A band of tiles: key block j is computed for query block i when |i − j| ≤ <paramref name="bandBlocks"/>.</summary>
    public static BlockSparseMask Local(int queryLength, int keyLength, int bandBlocks, int blockSize = FlashAttentionOptions.DefaultBlockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bandBlocks);
        return Build(queryLength, keyLength, blockSize, (i, j) => Math.Abs(i - j) <= bandBlocks);
    }

    /// <summary>Square diagonal groups of <paramref name="groupBlocks"/> × <paramref name="groupBlocks"/> tiles.</summary>
    public static BlockSparseMask BlockDiagonal(int queryLength, int keyLength, int groupBlocks, int blockSize = FlashAttentionOptions.DefaultBlockSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(groupBlocks, 1);
        return Build(queryLength, keyLength, blockSize, (i, j) => i / groupBlocks == j / groupBlocks);
    }

    /// <summary>
    /// The flat block butterfly of Pixelated Butterfly: the union of the supports of the first
    /// <paramref name="factors"/> butterfly factors over the tiles (tile i meets tile i XOR 2^f for f below the
    /// factor count, and itself), plus <paramref name="globalBlocks"/> dense leading rows and columns of tiles
    /// (global tokens).
    /// </summary>
    public static BlockSparseMask FlatButterfly(int queryLength, int keyLength, int factors, int globalBlocks = 0, int blockSize = FlashAttentionOptions.DefaultBlockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(factors);
        ArgumentOutOfRangeException.ThrowIfNegative(globalBlocks);
        return Build(queryLength, keyLength, blockSize, (i, j) =>
        {
            if (i < globalBlocks || j < globalBlocks || i == j)
                return true;
            int x = i ^ j;
            return (x & (x - 1)) == 0 && BitOperations.Log2((uint)x) < factors;
        });
    }

    private static BlockSparseMask Build(int queryLength, int keyLength, int blockSize, Func<int, int, bool> keep)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(queryLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(keyLength, 1);
        FlashAttentionOptions.CheckBlockSize(blockSize, nameof(blockSize));
        int tr = (queryLength + blockSize - 1) / blockSize, tc = (keyLength + blockSize - 1) / blockSize;
        var blocks = new bool[tr, tc];
        for (int i = 0; i < tr; i++)
            for (int j = 0; j < tc; j++)
                blocks[i, j] = keep(i, j);
        return new BlockSparseMask(blocks, blockSize, blockSize);
    }
}
