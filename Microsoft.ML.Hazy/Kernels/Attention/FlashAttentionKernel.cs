using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.InteropServices;

namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>The shape of one attention call: tensors are contiguous [batch, heads, length, headDim] float32.</summary>
/// <param name="Batch">Batch size.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="QueryLength">Queries per sequence.</param>
/// <param name="KeyLength">Keys (and values) per sequence.</param>
/// <param name="HeadDim">The head dimension d of Q, K and V.</param>
public readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, int HeadDim)
{
    /// <summary>Elements of Q and O.</summary>
    public long QueryElements => (long)Batch * Heads * QueryLength * HeadDim;

    /// <summary>Elements of K and V.</summary>
    public long KeyElements => (long)Batch * Heads * KeyLength * HeadDim;

    /// <summary>Elements of the log-sum-exp, [batch, heads, queryLength].</summary>
    public long RowCount => (long)Batch * Heads * QueryLength;

    internal void Validate()
    {
        if (Batch < 1 || Heads < 1 || QueryLength < 1 || KeyLength < 1 || HeadDim < 1)
            throw new ArgumentException($"Attention dimensions must be positive; got batch {Batch}, heads {Heads}, query length {QueryLength}, key length {KeyLength}, head size {HeadDim}.");
    }
}

/// <summary>
/// Exact attention O = softmax(τQKᵀ + mask)V on the CPU with the FlashAttention-2 tiling: query blocks outer (one
/// parallel work item per batch × head × query block), key/value blocks inner, an online softmax whose log-sum-exp
/// is kept for the backward, and O(length) extra memory. The backward is the paper's Algorithm 4 with
/// recomputation, parallel over batch × head × key blocks.
/// </summary>
public static unsafe class FlashAttentionKernel
{
    /// <summary>The widest instruction set this machine runs well (what the kernel uses unless told otherwise).</summary>
    public static SimdLevel BestSimdLevel => TileMath.Best;

    /// <summary>Forward pass: writes O ([B, H, Lq, d]) and the log-sum-exp of each score row ([B, H, Lq]; −∞ for a fully masked row, whose O is 0).</summary>
    public static void Forward(AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> o, Span<float> lse, FlashAttentionOptions? options = null)
    {
        shape.Validate();
        CheckLength(q.Length, shape.QueryElements, "q");
        CheckLength(k.Length, shape.KeyElements, "k");
        CheckLength(v.Length, shape.KeyElements, "v");
        CheckLength(o.Length, shape.QueryElements, "o");
        CheckLength(lse.Length, shape.RowCount, "lse");
        fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            Forward(shape, pq, pk, pv, po, pl, options ?? new FlashAttentionOptions());
    }

    /// <summary>Backward pass: from dO, the forward's inputs, O and log-sum-exp, writes dQ, dK and dV.</summary>
    public static void Backward(AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> o, ReadOnlySpan<float> lse, ReadOnlySpan<float> dO, Span<float> dq, Span<float> dk, Span<float> dv,
        FlashAttentionOptions? options = null)
    {
        shape.Validate();
        CheckLength(q.Length, shape.QueryElements, "q");
        CheckLength(k.Length, shape.KeyElements, "k");
        CheckLength(v.Length, shape.KeyElements, "v");
        CheckLength(o.Length, shape.QueryElements, "o");
        CheckLength(lse.Length, shape.RowCount, "lse");
        CheckLength(dO.Length, shape.QueryElements, "dO");
        CheckLength(dq.Length, shape.QueryElements, "dq");
        CheckLength(dk.Length, shape.KeyElements, "dk");
        CheckLength(dv.Length, shape.KeyElements, "dv");
        fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse, pdo = dO, pdq = dq, pdk = dk, pdv = dv)
            Backward(shape, pq, pk, pv, po, pl, pdo, pdq, pdk, pdv, options ?? new FlashAttentionOptions());
    }

    /// <summary>Whether dropout keeps score (<paramref name="row"/>, <paramref name="column"/>) of batch-head <paramref name="batchHead"/> (= b·H + h).</summary>
    public static bool DropoutKeeps(ulong seed, int batchHead, int row, int column, double probability) =>
        KeepBits(RowKey(seed, batchHead, row), column) >= Threshold(probability);

    private static void CheckLength(long actual, long expected, string name)
    {
        if (actual != expected)
            throw new ArgumentException($"Attention buffer '{name}' has {actual} elements; the shape needs {expected}.", name);
    }

    /// <summary>The resolved settings of one call.</summary>
    private sealed class Plan
    {
        public Plan(AttentionShape shape, FlashAttentionOptions options)
        {
            Shape = shape;
            D = shape.HeadDim;
            Dp = RoundUp(D, 16);
            Isa = TileMath.Resolve(options.MaxSimdLevel);
            Scale = (float)(options.Scale ?? 1.0 / Math.Sqrt(D));
            Mask = options.BlockMask;
            Br = Mask?.QueryBlockSize ?? options.QueryBlockSize;
            Bc = Mask?.KeyBlockSize ?? options.KeyBlockSize;
            FlashAttentionOptions.CheckBlockSize(Br, nameof(options.QueryBlockSize));
            FlashAttentionOptions.CheckBlockSize(Bc, nameof(options.KeyBlockSize));
            Tr = (shape.QueryLength + Br - 1) / Br;
            Tc = (shape.KeyLength + Bc - 1) / Bc;
            if (Mask is not null && (Mask.QueryBlocks != Tr || Mask.KeyBlocks != Tc))
                throw new ArgumentException($"The block mask is {Mask.QueryBlocks} × {Mask.KeyBlocks} blocks; query length {shape.QueryLength} and key length {shape.KeyLength} in blocks of {Br} × {Bc} need {Tr} × {Tc}.", nameof(options));
            Causal = options.Causal;
            CausalOffset = shape.KeyLength - shape.QueryLength;
            KeyLengths = options.KeyLengths;
            if (KeyLengths is not null)
            {
                if (KeyLengths.Length != shape.Batch)
                    throw new ArgumentException($"KeyLengths has {KeyLengths.Length} entries; the batch has {shape.Batch}.", nameof(options));
                foreach (var len in KeyLengths)
                    if (len < 0 || len > shape.KeyLength)
                        throw new ArgumentException($"Key length {len} is outside [0, {shape.KeyLength}].", nameof(options));
            }
            double p = options.DropoutProbability;
            if (!(p >= 0 && p < 1))
                throw new ArgumentOutOfRangeException(nameof(options), p, "The dropout probability must be in [0, 1).");
            Dropout = p > 0;
            DropThreshold = Threshold(p);
            KeepScale = (float)(1 / (1 - p));
            Seed = options.DropoutSeed;
            KeyCacheBytes = options.KeyCacheBytes;
            Fused = ForwardStep.Fits(Isa, Dp) && options.FusedForward;
            Br4 = RoundUp(Br, 4);
            Ls = RoundUp(Bc, 16);
            KeyLd = Fused ? RoundUp(Bc, ForwardStep.Keys) : Ls;
            Workers = options.Workers ?? Environment.ProcessorCount;
            if (Workers < 1)
                throw new ArgumentOutOfRangeException(nameof(options), Workers, "The kernel needs at least one worker.");
        }

        /// <summary>Query rows a tile buffer holds: the GEMM micro-kernel works on 4 rows at a time.</summary>
        public int Br4 { get; }

        /// <summary>
        /// Row stride of score tiles (and of τKᵀ, Vᵀ in the backward): the micro-kernel writes 16 columns at a time. It
        /// equals <see cref="Bc"/> for the usual tile sizes, multiples of 16; other sizes pad the buffers instead.
        /// </summary>
        public int Ls { get; }

        /// <summary>The most threads a call uses; with one, every work item runs on the calling thread.</summary>
        public int Workers { get; }

        /// <summary>Whether the forward runs the fused step (<see cref="ForwardStep"/>).</summary>
        public bool Fused { get; }

        /// <summary>Leading dimension of a packed τKᵀ tile in the forward: the fused step reads whole 64-key strips.</summary>
        public int KeyLd { get; }

        public long KeyCacheBytes { get; }

        public AttentionShape Shape { get; }
        public int D { get; }
        public int Dp { get; }
        public SimdLevel Isa { get; }
        public float Scale { get; }
        public BlockSparseMask? Mask { get; }
        public int Br { get; }
        public int Bc { get; }
        public int Tr { get; }
        public int Tc { get; }
        public bool Causal { get; }
        public int CausalOffset { get; }
        public int[]? KeyLengths { get; }
        public bool Dropout { get; }
        public uint DropThreshold { get; }
        public float KeepScale { get; }
        public ulong Seed { get; }

        public int KeyLength(int batch) => KeyLengths?[batch] ?? Shape.KeyLength;

        // Tile (i, j) holds at least one unmasked score.
        public bool Active(int batch, int i, int j)
        {
            if (Mask is not null && !Mask[i, j])
                return false;
            int j0 = j * Bc;
            if (j0 >= KeyLength(batch))
                return false;
            if (Causal)
            {
                int lastRow = Math.Min((i + 1) * Br, Shape.QueryLength) - 1;
                if ((long)j0 > (long)lastRow + CausalOffset)
                    return false;
            }
            return true;
        }

        // Keys of the tile starting at j0 (nc of them) that row sees: always a prefix, as causal and padding masks cut the right end.
        public int VisibleColumns(int batch, int row, int j0, int nc)
        {
            long limit = KeyLength(batch);
            if (Causal)
                limit = Math.Min(limit, (long)row + CausalOffset + 1);
            return (int)Math.Clamp(limit - j0, 0, nc);
        }
    }

    /// <summary>Per-worker tile buffers, 64-byte aligned and zeroed once.</summary>
    private sealed class Workspace : IDisposable
    {
        private readonly List<nint> _blocks = new();

        public Workspace(Plan plan, bool backward)
        {
            int br = plan.Br4, bc = plan.Bc, ls = plan.Ls, dp = plan.Dp;
            Qs = Alloc(br * dp);
            S = Alloc(br * ls);
            Kt = Alloc(dp * plan.KeyLd);
            Vb = Alloc(bc * dp);
            P = Alloc(4 * ForwardStep.Keys);
            Lv = Alloc(br * 16);
            Alpha = Alloc(16);
            Visible = (int*)Alloc(4);
            Acc = Alloc(br * dp);
            M = Alloc(br);
            Lsum = Alloc(br);
            Z = Alloc(bc);
            if (backward)
            {
                Ks = Alloc(bc * dp);
                Vt = Alloc(dp * ls);
                Dob = Alloc(br * dp);
                Dpb = Alloc(br * ls);
                Pd = Alloc(br * ls);
                DkAcc = Alloc(ls * dp);
                DvAcc = Alloc(ls * dp);
            }
        }

        public float* Qs, S, Kt, Vb, Acc, M, Lsum, Z, Ks, Vt, Dob, Dpb, Pd, DkAcc, DvAcc, P, Lv, Alpha;
        public int* Visible;

        private float* _keyCache;
        private bool[]? _packed;
        private int _cachedBh = -1;

        // τK_jᵀ for the forward. The key tiles of the current batch-head stay packed while this worker moves through its
        // query blocks (up to KeyCacheBytes, 32 MiB by default, per worker; beyond that each tile is repacked on use).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public float* KeyTile(Plan plan, int bh, int j, float* keys, int nc)
        {
            long tileFloats = (long)plan.D * plan.KeyLd;
            if (_packed is null)
            {
                bool fits = tileFloats * plan.Tc * sizeof(float) <= plan.KeyCacheBytes;
                _packed = new bool[fits ? plan.Tc : 1];
                _keyCache = fits ? Alloc((int)(tileFloats * plan.Tc)) : Kt;
            }
            if (_cachedBh != bh)
            {
                Array.Clear(_packed);
                _cachedBh = bh;
            }
            int slot = _packed.Length == 1 ? 0 : j;
            float* tile = _keyCache + slot * tileFloats;
            if (_packed.Length == 1 || !_packed[slot])
            {
                PackTransposed(keys, nc, plan.D, plan.KeyLd, plan.Scale, tile);
                _packed[slot] = _packed.Length > 1;
            }
            return tile;
        }

        private float* Alloc(int count)
        {
            t_nativeBytes += (long)count * sizeof(float);
            var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
            NativeMemory.Clear(p, (nuint)(count * sizeof(float)));
            _blocks.Add((nint)p);
            return p;
        }

        public void Dispose()
        {
            foreach (var p in _blocks)
                NativeMemory.AlignedFree((void*)p);
            _blocks.Clear();
        }
    }

    [ThreadStatic]
    private static long t_nativeBytes;

    /// <summary>Bytes of tile buffers and key caches the kernel has allocated on this thread (all of a call's with one worker).</summary>
    internal static long NativeBytesAllocatedForCurrentThread => t_nativeBytes;

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    // One worker per core by default: each holds its own tile buffers and key cache, so memory stays bounded by
    // cores × workspace even when the thread pool injects extra threads during long calls.
    private static ParallelOptions Workers(Plan plan) => new() { MaxDegreeOfParallelism = plan.Workers };

    // Parallel.For over work items with a workspace per worker; with one worker the items run in order on the calling
    // thread, so that its allocations are all of the call's.
    private static void ForEachItem(Plan plan, int items, bool backward, Action<int, Workspace> body)
    {
        if (plan.Workers == 1)
        {
            using var ws = new Workspace(plan, backward);
            for (int item = 0; item < items; item++)
                body(item, ws);
            return;
        }
        Parallel.For(0, items, Workers(plan), () => new Workspace(plan, backward),
            (item, _, ws) =>
            {
                body(item, ws);
                return ws;
            },
            ws => ws.Dispose());
    }

    internal static void Forward(AttentionShape shape, float* q, float* k, float* v, float* o, float* lse, FlashAttentionOptions options)
    {
        shape.Validate();
        var plan = new Plan(shape, options);
        nint pq = (nint)q, pk = (nint)k, pv = (nint)v, po = (nint)o, pl = (nint)lse;
        ForEachItem(plan, shape.Batch * shape.Heads * plan.Tr, backward: false,
            (item, ws) => ForwardBlock(plan, ws, item / plan.Tr, item % plan.Tr, (float*)pq, (float*)pk, (float*)pv, (float*)po, (float*)pl));
    }

    // FlashAttention-2 forward for one query block: online softmax over the key blocks, LSE = m + log ℓ.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardBlock(Plan plan, Workspace ws, int bh, int i, float* q, float* k, float* v, float* o, float* lse)
    {
        if (plan.Fused)
        {
            ForwardBlockFused(plan, ws, bh, i, q, k, v, o, lse);
            return;
        }
        var shape = plan.Shape;
        int b = bh / shape.Heads, d = plan.D, dp = plan.Dp, bc = plan.Bc, ls = plan.Ls;
        int r0 = i * plan.Br, nr = Math.Min(plan.Br, shape.QueryLength - r0), nr4 = RoundUp(nr, 4);
        var isa = plan.Isa;
        float* qt = RowTile(q + ((long)bh * shape.QueryLength + r0) * d, nr, nr4, d, dp, ws.Qs, out int ldq);
        new Span<float>(ws.Acc, nr4 * dp).Clear();
        for (int r = 0; r < nr; r++)
        {
            ws.M[r] = float.NegativeInfinity;
            ws.Lsum[r] = 0;
        }
        float* kh = k + (long)bh * shape.KeyLength * d, vh = v + (long)bh * shape.KeyLength * d;
        for (int j = 0; j < plan.Tc; j++)
        {
            if (!plan.Active(b, i, j))
                continue;
            int j0 = j * bc, nc = Math.Min(bc, shape.KeyLength - j0), nc16 = RoundUp(nc, 16);
            float* kt = ws.KeyTile(plan, bh, j, kh + (long)j0 * d, nc);
            float* vt = RowTile(vh + (long)j0 * d, nc, nc, d, dp, ws.Vb, out int ldv);
            TileMath.Gemm(isa, qt, ldq, kt, plan.KeyLd, ws.S, ls, nr4, nc16, d, accumulate: false);
            for (int r = 0; r < nr; r++)
            {
                int row = r0 + r;
                float* s = ws.S + r * ls;
                int visible = plan.VisibleColumns(b, row, j0, nc);
                if (visible == 0)
                {
                    new Span<float>(s, nc).Clear();
                    continue;
                }
                float mOld = ws.M[r];
                float mNew = MathF.Max(mOld, TileMath.Max(isa, s, visible));
                float sum = TileMath.ExpShifted(isa, s, visible, mNew);
                new Span<float>(s + visible, nc - visible).Clear();
                float alpha = MathF.Exp(mOld - mNew);
                ws.Lsum[r] = ws.Lsum[r] * alpha + sum;
                ws.M[r] = mNew;
                if (alpha != 1f)
                    TileMath.Scale(isa, ws.Acc + r * dp, dp, alpha);
                if (plan.Dropout)
                    ApplyDropout(plan, s, visible, bh, row, j0);
            }
            TileMath.Gemm(isa, ws.S, ls, vt, ldv, ws.Acc, dp, nr4, dp, nc, accumulate: true);
        }
        float* oh = o + ((long)bh * shape.QueryLength + r0) * d;
        float* lh = lse + (long)bh * shape.QueryLength + r0;
        for (int r = 0; r < nr; r++)
        {
            float l = ws.Lsum[r];
            float inv = l > 0 ? 1f / l : 0f;
            float* acc = ws.Acc + r * dp;
            float* orow = oh + (long)r * d;
            for (int c = 0; c < d; c++)
                orow[c] = acc[c] * inv;
            lh[r] = l > 0 ? ws.M[r] + MathF.Log(l) : float.NegativeInfinity;
        }
    }

    // The same query block through the fused AVX-512 step: for each 64-key strip of each active key block, four rows at a
    // time go through scores, online softmax and P·V without leaving L1 (see ForwardStep). The strip's τKᵀ and V
    // (2 · 64 · d floats: 32 KiB at d = 64) stay in L1 while the block's Br / 4 quads stream through them.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardBlockFused(Plan plan, Workspace ws, int bh, int i, float* q, float* k, float* v, float* o, float* lse)
    {
        var shape = plan.Shape;
        const int strip = ForwardStep.Keys;
        int b = bh / shape.Heads, d = plan.D, dp = plan.Dp, bc = plan.Bc;
        int r0 = i * plan.Br, nr = Math.Min(plan.Br, shape.QueryLength - r0), nr4 = RoundUp(nr, 4);
        float* qt = RowTile(q + ((long)bh * shape.QueryLength + r0) * d, nr, nr4, d, dp, ws.Qs, out int ldq);
        new Span<float>(ws.Acc, nr4 * dp).Clear();
        new Span<float>(ws.Lv, nr4 * 16).Clear();
        new Span<float>(ws.M, nr4).Fill(float.NegativeInfinity);
        float* kh = k + (long)bh * shape.KeyLength * d, vh = v + (long)bh * shape.KeyLength * d;
        int* visible = ws.Visible;
        for (int j = 0; j < plan.Tc; j++)
        {
            if (!plan.Active(b, i, j))
                continue;
            int j0 = j * bc, nc = Math.Min(bc, shape.KeyLength - j0);
            float* kt = ws.KeyTile(plan, bh, j, kh + (long)j0 * d, nc);
            float* vt = RowTile(vh + (long)j0 * d, nc, nc, d, dp, ws.Vb, out int ldv);
            for (int s0 = 0; s0 < nc; s0 += strip)
            {
                int keys = Math.Min(strip, nc - s0);
                // Without causal or padding masks every row sees the whole strip.
                bool open = !plan.Causal && plan.KeyLengths is null;
                visible[0] = visible[1] = visible[2] = visible[3] = keys;
                for (int r = 0; r < nr4; r += 4)
                {
                    if (!open)
                    {
                        int seen = 0;
                        for (int x = 0; x < 4; x++)
                        {
                            // Rows past the block's end are zero padding: they see every key and are never written out.
                            visible[x] = r + x < nr ? plan.VisibleColumns(b, r0 + r + x, j0 + s0, keys) : keys;
                            seen |= visible[x];
                        }
                        if (seen == 0)
                            continue;
                    }
                    ForwardStep.Scores(qt + r * ldq, ldq, d, kt + s0, plan.KeyLd, visible, ws.M + r, ws.Lv + r * 16, ws.P, ws.Alpha);
                    if (plan.Dropout)
                        for (int x = 0; x < 4 && r + x < nr; x++)
                            ApplyDropout(plan, ws.P + x * strip, visible[x], bh, r0 + r + x, j0 + s0);
                    ForwardStep.Accumulate(ws.P, keys, vt + (long)s0 * ldv, ldv, ws.Acc + r * dp, dp, dp, ws.Alpha);
                }
            }
        }
        float* oh = o + ((long)bh * shape.QueryLength + r0) * d;
        float* lh = lse + (long)bh * shape.QueryLength + r0;
        for (int r = 0; r < nr; r++)
        {
            float l = Vector512.Sum(Vector512.Load(ws.Lv + r * 16));
            float inv = l > 0 ? 1f / l : 0f;
            float* acc = ws.Acc + r * dp;
            float* orow = oh + (long)r * d;
            for (int c = 0; c < d; c++)
                orow[c] = acc[c] * inv;
            lh[r] = l > 0 ? ws.M[r] + MathF.Log(l) : float.NegativeInfinity;
        }
    }

    internal static void Backward(AttentionShape shape, float* q, float* k, float* v, float* o, float* lse, float* dO,
        float* dq, float* dk, float* dv, FlashAttentionOptions options)
    {
        shape.Validate();
        var plan = new Plan(shape, options);
        int d = plan.D, bhCount = shape.Batch * shape.Heads;
        new Span<float>(dk, checked((int)shape.KeyElements)).Clear();
        new Span<float>(dv, checked((int)shape.KeyElements)).Clear();
        new Span<float>(dq, checked((int)shape.QueryElements)).Clear();

        // D_i = rowsum(dO ∘ O), once per row.
        var rowDot = new float[shape.RowCount];
        nint po = (nint)o, pdo = (nint)dO;
        Parallel.For(0, bhCount, Workers(plan), bh =>
        {
            for (int r = 0; r < shape.QueryLength; r++)
            {
                long off = ((long)bh * shape.QueryLength + r) * d;
                rowDot[(long)bh * shape.QueryLength + r] = TileMath.Dot(plan.Isa, (float*)po + off, (float*)pdo + off, d);
            }
        });

        // Each (batch-head, chunk) owns the key blocks j ≡ chunk (mod chunks); with few batch-heads, chunks > 1 and
        // each chunk accumulates dQ into its own buffer, summed afterwards (no atomics, deterministic).
        int workers = plan.Workers;
        int chunks = Math.Clamp((2 * workers + bhCount - 1) / bhCount, 1, plan.Tc);
        float[]? partial = chunks > 1 ? new float[(long)chunks * shape.QueryElements] : null;
        nint pq = (nint)q, pk = (nint)k, pv = (nint)v, pl = (nint)lse, pdq = (nint)dq, pdk = (nint)dk, pdv = (nint)dv;
        fixed (float* ppart = partial)
        {
            nint pp = (nint)ppart;
            ForEachItem(plan, bhCount * chunks, backward: true, (item, ws) =>
            {
                int bh = item / chunks, chunk = item % chunks;
                float* dqTarget = partial is null ? (float*)pdq : (float*)pp + chunk * shape.QueryElements;
                for (int j = chunk; j < plan.Tc; j += chunks)
                    BackwardKeyBlock(plan, ws, bh, j, (float*)pq, (float*)pk, (float*)pv, (float*)pl, (float*)pdo, rowDot,
                        dqTarget, (float*)pdk, (float*)pdv);
            });
            if (partial is not null)
            {
                long n = shape.QueryElements;
                Parallel.For(0, bhCount, Workers(plan), bh =>
                {
                    long start = (long)bh * shape.QueryLength * d, end = start + (long)shape.QueryLength * d;
                    for (int c = 0; c < chunks; c++)
                    {
                        float* src = (float*)pp + c * n;
                        TileMath.AddTo(plan.Isa, (float*)pdq + start, src + start, checked((int)(end - start)));
                    }
                });
            }
        }
    }

    // Algorithm 4 for one key block: recompute P = exp(S − LSE), dV += Pdᵀ dO, dS = P ∘ (dP∘Z − D), dK += τ dSᵀ Q, dQ += τ dS K.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardKeyBlock(Plan plan, Workspace ws, int bh, int j, float* q, float* k, float* v, float* lse,
        float* dO, float[] rowDot, float* dq, float* dk, float* dv)
    {
        var shape = plan.Shape;
        var isa = plan.Isa;
        int b = bh / shape.Heads, d = plan.D, dp = plan.Dp, bc = plan.Bc, br = plan.Br, ls = plan.Ls;
        int j0 = j * bc, nc = Math.Min(bc, shape.KeyLength - j0), nc4 = RoundUp(nc, 4), nc16 = RoundUp(nc, 16);
        float* kh = k + ((long)bh * shape.KeyLength + j0) * d, vh = v + ((long)bh * shape.KeyLength + j0) * d;
        bool any = false;
        for (int i = 0; i < plan.Tr; i++)
        {
            if (!plan.Active(b, i, j))
                continue;
            if (!any)
            {
                any = true;
                PackTransposed(kh, nc, d, ls, plan.Scale, ws.Kt);
                PackTransposed(vh, nc, d, ls, 1f, ws.Vt);
                PackRows(kh, nc, nc, d, dp, plan.Scale, ws.Ks, isa);
                new Span<float>(ws.DkAcc, nc4 * dp).Clear();
                new Span<float>(ws.DvAcc, nc4 * dp).Clear();
            }
            int r0 = i * br, nr = Math.Min(br, shape.QueryLength - r0), nr4 = RoundUp(nr, 4);
            long rowBase = (long)bh * shape.QueryLength + r0;
            float* qt = RowTile(q + rowBase * d, nr, nr4, d, dp, ws.Qs, out int ldq);
            float* dot = RowTile(dO + rowBase * d, nr, nr4, d, dp, ws.Dob, out int lddo);
            TileMath.Gemm(isa, qt, ldq, ws.Kt, ls, ws.S, ls, nr4, nc16, d, accumulate: false);
            TileMath.Gemm(isa, dot, lddo, ws.Vt, ls, ws.Dpb, ls, nr4, nc16, d, accumulate: false);
            for (int r = 0; r < nr4; r++)
            {
                float* p = ws.S + r * ls, dpr = ws.Dpb + r * ls, pd = ws.Pd + r * ls;
                int visible = r < nr ? plan.VisibleColumns(b, r0 + r, j0, nc) : 0;
                if (visible > 0)
                {
                    TileMath.ExpShifted(isa, p, visible, lse[rowBase + r]);
                    if (plan.Dropout)
                    {
                        FillDropoutRow(plan, ws.Z, visible, bh, r0 + r, j0);
                        for (int c = 0; c < visible; c++)
                        {
                            pd[c] = p[c] * ws.Z[c];
                            dpr[c] *= ws.Z[c];
                        }
                    }
                    TileMath.SoftmaxGradient(isa, p, dpr, visible, rowDot[rowBase + r]);
                }
                new Span<float>(p + visible, nc16 - visible).Clear();
                new Span<float>(dpr + visible, nc16 - visible).Clear();
                if (plan.Dropout)
                    new Span<float>(pd + visible, nc16 - visible).Clear();
            }
            TileMath.GemmTransposedA(isa, plan.Dropout ? ws.Pd : ws.S, ls, dot, lddo, ws.DvAcc, dp, nc4, dp, nr4, accumulate: true);
            TileMath.GemmTransposedA(isa, ws.Dpb, ls, qt, ldq, ws.DkAcc, dp, nc4, dp, nr4, accumulate: true);
            TileMath.Gemm(isa, ws.Dpb, ls, ws.Ks, dp, ws.Acc, dp, nr4, dp, nc, accumulate: false);
            for (int r = 0; r < nr; r++)
                TileMath.AddTo(isa, dq + (rowBase + r) * d, ws.Acc + r * dp, d);
        }
        if (!any)
            return;
        float* dkh = dk + ((long)bh * shape.KeyLength + j0) * d, dvh = dv + ((long)bh * shape.KeyLength + j0) * d;
        for (int c = 0; c < nc; c++)
        {
            TileMath.Scale(isa, ws.DkAcc + c * dp, d, plan.Scale);
            new Span<float>(ws.DkAcc + c * dp, d).CopyTo(new Span<float>(dkh + (long)c * d, d));
            new Span<float>(ws.DvAcc + c * dp, d).CopyTo(new Span<float>(dvh + (long)c * d, d));
        }
    }

    // A rows × d block used in place when the GEMM can read it directly (d a multiple of 16, rows a multiple of 4), else packed.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float* RowTile(float* src, int rows, int rows4, int d, int dp, float* buffer, out int ld)
    {
        if (d == dp && rows == rows4)
        {
            ld = d;
            return src;
        }
        PackRows(src, rows, rows4, d, dp, 1f, buffer, SimdLevel.Scalar);
        ld = dp;
        return buffer;
    }

    // rows × d source (row stride d) → rows4 × dp tile, times a; padding rows zeroed.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRows(float* src, int rows, int rows4, int d, int dp, float a, float* dst, SimdLevel isa)
    {
        for (int r = 0; r < rows; r++)
        {
            new Span<float>(src + (long)r * d, d).CopyTo(new Span<float>(dst + r * dp, d));
            if (a != 1f)
                TileMath.Scale(isa, dst + r * dp, d, a);
        }
        if (rows4 > rows)
            new Span<float>(dst + rows * dp, (rows4 - rows) * dp).Clear();
    }

    // rows × d source → d × ld transposed tile, times a.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackTransposed(float* src, int rows, int d, int ld, float a, float* dst)
    {
        // Output rows in order (contiguous stores); the strided reads stay within the rows × d source tile, in L1.
        for (int c = 0; c < d; c++)
        {
            float* t = dst + (long)c * ld, s = src + c;
            for (int r = 0; r < rows; r++)
                t[r] = s[(long)r * d] * a;
        }
    }

    // P̃ ← P̃ ∘ Z after the row statistics (Algorithm 2): kept entries scaled by 1/(1 − p).
    private static void ApplyDropout(Plan plan, float* p, int n, int bh, int row, int j0) =>
        FillDropoutRow(plan, p, n, bh, row, j0, multiply: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FillDropoutRow(Plan plan, float* z, int n, int bh, int row, int j0, bool multiply = false)
    {
        ulong key = RowKey(plan.Seed, bh, row);
        for (int c = 0; c < n; c++)
        {
            float factor = KeepBits(key, j0 + c) >= plan.DropThreshold ? plan.KeepScale : 0f;
            z[c] = multiply ? z[c] * factor : factor;
        }
    }

    private static uint Threshold(double p) => (uint)Math.Min(Math.Round(p * 4294967296.0), uint.MaxValue);

    // Counter-based dropout bits: SplitMix64 finalizer of (seed, batch-head, row) then of (row key, column).
    private static ulong RowKey(ulong seed, int bh, int row) =>
        Mix(seed ^ Mix(((ulong)(uint)bh << 32 | (uint)row) + 0x9E3779B97F4A7C15UL));

    private static uint KeepBits(ulong rowKey, int column) => (uint)(Mix(rowKey + (ulong)(uint)column * 0xD1B54A32D192ED03UL) >> 32);

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
