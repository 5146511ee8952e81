namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>
/// The settings of one FlashAttention call: scale, causal and key-padding masks, a block-sparse mask, dropout
/// and the tile sizes.
/// </summary>
public sealed class FlashAttentionOptions
{
    /// <summary>
    /// The default tile size (rows of a query block and keys of a key block). With 64 × 64 tiles and a head size up
    /// to 128, one work item holds the query tile, the output accumulator, one K and one V tile and the score tile:
    /// 4 · 64 · 128 · 4 B + 64 · 64 · 4 B ≈ 144 KiB, well inside a 1-2 MiB L2, while the 64-key rows the
    /// micro-kernel streams (256 B per K/V row, 16-32 KiB per tile) stay in the 32-48 KiB L1. Larger tiles gain
    /// little (the micro-kernel is already FMA-bound) and waste more work on causal diagonals and sparse masks. With
    /// AVX-512 the forward goes through each key tile in strips of 64 keys, four query rows at a time, keeping scores,
    /// probabilities and the rows' accumulators in registers and L1 (any tile size works; 64 matches one strip).
    /// </summary>
    public const int DefaultBlockSize = 64;

    /// <summary>The factor on QKᵀ; null means 1/√d.</summary>
    public double? Scale { get; set; }

    /// <summary>
    /// Causal masking, aligned bottom-right as in FlashAttention ≥ 2.1: query i may see key j iff
    /// j ≤ i + (keyLength − queryLength). With more queries than keys the first queries see nothing and give zeros.
    /// </summary>
    public bool Causal { get; set; }

    /// <summary>Per batch element, how many leading keys are real (the rest are padding and masked); null means all.</summary>
    public int[]? KeyLengths { get; set; }

    /// <summary>A block-sparse tile mask; when set, its block sizes are the tile sizes.</summary>
    public BlockSparseMask? BlockMask { get; set; }

    /// <summary>Dropout probability on the attention weights, in [0, 1).</summary>
    public double DropoutProbability { get; set; }

    /// <summary>The seed of the counter-based dropout mask; the same seed regenerates the same mask in the backward.</summary>
    public ulong DropoutSeed { get; set; }

    /// <summary>
    /// Rows per query block when there is no <see cref="BlockMask"/>, from 1 to 256. Multiples of 16 are the sizes to
    /// use: the micro-kernel works on 4 rows × 16 keys at a time, so other sizes run on padded tiles and waste work.
    /// They exist so that the tiling can be checked on small hand-checkable tiles (1, 2, 3 rows).
    /// </summary>
    public int QueryBlockSize { get; set; } = DefaultBlockSize;

    /// <summary>Keys per key block when there is no <see cref="BlockMask"/>, from 1 to 256 (multiples of 16: see <see cref="QueryBlockSize"/>).</summary>
    public int KeyBlockSize { get; set; } = DefaultBlockSize;

    /// <summary>The widest instruction set to use; null picks the best this machine has.</summary>
    public SimdLevel? MaxSimdLevel { get; set; }

    /// <summary>Per-worker memory for keeping a batch-head's packed key tiles; beyond it tiles are repacked on use.</summary>
    internal long KeyCacheBytes { get; set; } = 32L << 20;

    /// <summary>The most threads a call uses; null means one per core. With 1 the call runs on the calling thread.</summary>
    internal int? Workers { get; set; }

    /// <summary>
    /// Whether the CPU kernel's forward may take the fused AVX-512 step; off, it takes the general path. Set per call by
    /// the provider (<see cref="CpuKernelOptions.FusedAttentionForward"/>).
    /// </summary>
    internal bool FusedForward { get; set; } = true;

    /// <summary>A shallow copy.</summary>
    public FlashAttentionOptions Clone() => (FlashAttentionOptions)MemberwiseClone();

    internal static void CheckBlockSize(int size, string name)
    {
        if (size < 1 || size > 256)
            throw new ArgumentOutOfRangeException(name, size, "Attention block sizes must be between 1 and 256.");
    }
}
