using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels.Monarch;

/// <summary>
/// A fused CPU kernel for <see cref="MonarchMultiply.Bmm"/> on float32: tiles of 16 rows (32 with AVX-512) are transposed so that
/// SIMD lanes hold rows, which turns both permutations into index arithmetic; each block-diagonal product is then
/// a sequence of broadcast-weight FMAs over register tiles, with no reshape/permute copies and no small GEMM calls.
/// The backward pass is fused the same way: the input and middle gradients run over transposed row tiles (parallel
/// over tiles), and each weight gradient is an outer-product accumulation over the batch whose output elements are
/// split among work items, so every element is summed by one thread in batch order (deterministic). The forward
/// saves the first product in the permuted layout (B, L·R) that the second factor's gradient reads contiguously.
/// The backward with four libtorch <c>bmm</c> calls (the reference the fused one is tested against) is the default:
/// on the 2-core development machine it measured as fast or faster in most benchmark shapes (see
/// <see cref="CpuKernelOptions.FusedMonarchBackward"/>). When libtorch runs the backward with <c>create_graph: true</c>
/// (grad mode is on inside a backward exactly then), the backward recomputes the first product from the saved inputs
/// and runs the <c>bmm</c> formulas differentiably, so second-order gradients are exact.
/// </summary>
internal static unsafe class MonarchFusedKernel
{
    private const int Lanes = 8;
    private const int WideLanes = 16;

    /// <summary>Whether the kernel can run here (AVX2-class 256-bit vectors).</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    /// <summary>
    /// y = Bmm(x, w1, w2) for float32 CPU tensors x (B, k·p), w1, w2, through the fused kernel, differentiable to any
    /// order. <paramref name="wide"/>: 512-bit vectors (tiles of 32 rows; the machine must have them);
    /// <paramref name="fusedBackward"/>: the fused C# backward instead of four libtorch <c>bmm</c> products.
    /// </summary>
    public static Tensor Multiply(Tensor x, Tensor w1, Tensor w2, bool wide, bool fusedBackward)
    {
        foreach (var t in new[] { x, w1, w2 })
            if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32)
                throw new ArgumentException($"The fused Monarch kernel takes float32 CPU tensors; got {t.dtype} on {t.device}.");
        return MonarchFunction.apply(x, w1, w2, new Settings(wide && Vector512.IsHardwareAccelerated, fusedBackward));
    }

    private sealed record Settings(bool Wide, bool FusedBackward);

    private sealed class MonarchFunction : autograd.SingleTensorFunction<MonarchFunction>
    {
        public override string Name => "MonarchFusedMultiply";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var settings = (Settings)vars[3];
            using var x = ((Tensor)vars[0]).contiguous();
            using var w1 = ((Tensor)vars[1]).contiguous();
            using var w2 = ((Tensor)vars[2]).contiguous();
            long batch = x.shape[0];
            long k = w1.shape[0], q = w1.shape[1];
            long l = w2.shape[0], s = w2.shape[1];
            bool needGrad = ((Tensor)vars[0]).requires_grad || ((Tensor)vars[1]).requires_grad || ((Tensor)vars[2]).requires_grad;
            var y = empty(batch, l * s, dtype: ScalarType.Float32);
            // The first product in the permuted layout: h[b, l·R + r] = (x w1ᵀ)[b, r·L + l].
            Tensor? h = needGrad ? empty(batch, l * w2.shape[2], dtype: ScalarType.Float32) : null;
            Run(x, w1, w2, y, h, settings.Wide);
            if (needGrad)
            {
                // The caller's tensors (with their history, for a second-order backward) and the permuted first product.
                ctx.save_for_backward(new List<Tensor> { (Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], h! });
                ctx.save_data("settings", settings);
            }
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var saved = ctx.get_saved_variables();
            var settings = (Settings)ctx.get_data("settings");
            try
            {
                if (is_grad_enabled())
                {
                    // create_graph: h from x and w1 with libtorch ops, so the bmm formulas are differentiable in x, w1, w2 and grad.
                    using var permuted = PermutedFirstProduct(saved[0], saved[1], saved[2]);
                    return WithSettingsSlot(BmmBackward(saved[0], saved[1], saved[2], permuted, grad));
                }
                using var x = saved[0].contiguous();
                using var w1 = saved[1].contiguous();
                using var w2 = saved[2].contiguous();
                Tensor h = saved[3];
                return WithSettingsSlot(settings.FusedBackward ? FusedBackward(x, w1, w2, h, grad, settings.Wide) : BmmBackward(x, w1, w2, h, grad));
            }
            finally
            {
                foreach (var t in saved)
                    t.Dispose();
            }
        }

        // One gradient per argument of apply: none for the settings.
        private static List<Tensor> WithSettingsSlot(List<Tensor> gradients)
        {
            gradients.Add(null!);
            return gradients;
        }

        /// <summary>The first product x·w1ᵀ per block in the permuted layout h[b, l·R + r] = (x w1ᵀ)[b, r·L + l], by libtorch.</summary>
        private static Tensor PermutedFirstProduct(Tensor x, Tensor w1, Tensor w2)
        {
            using var scope = NewDisposeScope();
            long batch = x.shape[0];
            long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
            long l = w2.shape[0], r = w2.shape[2];
            var out1 = bmm(x.reshape(batch, k, p).transpose(0, 1), w1.transpose(-1, -2));   // (K, B, Q)
            var h = out1.transpose(0, 1).reshape(batch, r, l).transpose(1, 2).reshape(batch, l * r);
            return h.MoveToOuterDisposeScope();
        }

        private static List<Tensor> FusedBackward(Tensor x, Tensor w1, Tensor w2, Tensor h, Tensor grad, bool wide)
        {
            using var g = grad.contiguous();
            // The backward products read the factors transposed; transposed once here, their rows are contiguous as in the forward.
            using var w1t = w1.transpose(1, 2).contiguous();
            using var w2t = w2.transpose(1, 2).contiguous();
            var gradX = empty(x.shape, dtype: ScalarType.Float32);
            var gradW1 = empty(w1.shape, dtype: ScalarType.Float32);
            var gradW2 = empty(w2.shape, dtype: ScalarType.Float32);
            RunBackward(x, w1, w2, w1t, w2t, h, g, gradX, gradW1, gradW2, wide);
            return new List<Tensor> { gradX, gradW1, gradW2 };
        }

        /// <summary>The reference backward: four libtorch <c>bmm</c> calls with reshape/permute copies.</summary>
        private static List<Tensor> BmmBackward(Tensor x, Tensor w1, Tensor w2, Tensor h, Tensor grad)
        {
            using var scope = NewDisposeScope();
            long batch = x.shape[0];
            long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
            long l = w2.shape[0], s = w2.shape[1], r = w2.shape[2];
            // y[b, s·L + l] = Σ_r w2[l, s, r] h[b, l·R + r];  h[b, l·R + r] = (Σ_p w1[k, q, p] x[b, k·P + p]) at k·Q + q = r·L + l
            var gT = grad.reshape(batch, s, l).permute(2, 1, 0);         // (L, S, B)
            var hp = h.reshape(batch, l, r).transpose(0, 1);                     // (L, B, R)
            var gradW2 = bmm(gT, hp);
            var gradHp = bmm(gT.transpose(1, 2), w2);                        // (L, B, R)
            var gradH = gradHp.permute(1, 2, 0).reshape(batch, k, q).transpose(0, 1);   // (K, B, Q)
            var xk = x.reshape(batch, k, p).transpose(0, 1);                  // (K, B, P)
            var gradW1 = bmm(gradH.transpose(1, 2), xk);
            var gradX = bmm(gradH, w1).transpose(0, 1).reshape(batch, k * p);
            return new List<Tensor> { gradX.MoveToOuterDisposeScope(), gradW1.MoveToOuterDisposeScope(), gradW2.MoveToOuterDisposeScope() };
        }
    }

    /// <summary>Writes y (B, L·S) and, when given, h (B, L·R) in the permuted layout h[b, l·R + r] = first product at r·L + l.</summary>
    private static void Run(Tensor x, Tensor w1, Tensor w2, Tensor y, Tensor? h, bool wide)
    {
        int batch = (int)x.shape[0];
        int k = (int)w1.shape[0], q = (int)w1.shape[1], p = (int)w1.shape[2];
        int l = (int)w2.shape[0], s = (int)w2.shape[1], r = (int)w2.shape[2];
        int n = k * p, middle = k * q, outWidth = l * s;
        float* px = Pointer(x), pw1 = Pointer(w1), pw2 = Pointer(w2), py = Pointer(y);
        float* ph = h is null ? null : Pointer(h);
        int tileRows = wide && batch > 2 * Lanes ? 2 * WideLanes : 2 * Lanes;
        int tiles = (batch + tileRows - 1) / tileRows;
        long bufferFloats = (long)tileRows * (n + middle + outWidth);
        var shape = new Shape(k, q, p, l, s, r, tileRows);
        int workers = Math.Min(Environment.ProcessorCount, tiles);
        if (workers <= 1)
        {
            // A single tile runs inline: waiting on a queued replica costs a scheduling quantum on a loaded machine.
            var buffer = (float*)NativeMemory.AlignedAlloc((nuint)(bufferFloats * sizeof(float)), 64);
            try
            {
                for (int tile = 0; tile < tiles; tile++)
                    RunTile(shape, tile, batch, px, pw1, pw2, py, ph, buffer);
            }
            finally
            {
                NativeMemory.AlignedFree(buffer);
            }
            return;
        }
        Parallel.For(0, tiles, new ParallelOptions { MaxDegreeOfParallelism = workers },
            () => (IntPtr)NativeMemory.AlignedAlloc((nuint)(bufferFloats * sizeof(float)), 64),
            (tile, _, buffer) =>
            {
                RunTile(shape, tile, batch, px, pw1, pw2, py, ph, (float*)buffer);
                return buffer;
            },
            buffer => NativeMemory.AlignedFree((void*)buffer));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunTile(Shape d, int tile, int batch, float* x, float* w1, float* w2, float* y, float* h, float* buffer)
    {
        int n = d.K * d.P, middle = d.K * d.Q, outWidth = d.L * d.S, tileRows = d.Tile;
        float* xt = buffer, ht = xt + (long)tileRows * n, yt = ht + (long)tileRows * middle;
        int b0 = tile * tileRows, rows = Math.Min(tileRows, batch - b0);
        Transpose(x + (long)b0 * n, n, rows, tileRows, xt);
        BlockDiagonal1(d, w1, xt, ht);
        BlockDiagonal2(d, w2, ht, yt);
        Untranspose(yt, outWidth, rows, tileRows, y + (long)b0 * outWidth);
        if (h != null)
            UntransposePermuted(ht, d.R, d.L, rows, tileRows, h + (long)b0 * middle);
    }

    /// <summary>
    /// The gradients of y = Bmm(x, w1, w2) given g = ∂L/∂y (B, L·S) and the saved first product h (B, L·R, permuted).
    /// Phase 1 (parallel over row tiles): ∂h and ∂x in transposed tiles, writing ∂h (B, K·Q) and g permuted to (B, L·S)
    /// with gp[b, l·S + s] = g[b, s·L + l]. Phase 2 (parallel over weight-gradient output blocks): ∂w1[k] = ∂hₖᵀ xₖ and
    /// ∂w2[l] = gpₗᵀ hₗ as outer-product accumulations over the batch; each output element belongs to one work item and
    /// is summed in batch order, so the result does not depend on scheduling or on the number of threads.
    /// </summary>
    private static void RunBackward(Tensor x, Tensor w1, Tensor w2, Tensor w1t, Tensor w2t, Tensor h, Tensor g, Tensor gradX, Tensor gradW1, Tensor gradW2, bool wide)
    {
        int batch = (int)x.shape[0];
        int k = (int)w1.shape[0], q = (int)w1.shape[1], p = (int)w1.shape[2];
        int l = (int)w2.shape[0], s = (int)w2.shape[1], r = (int)w2.shape[2];
        int n = k * p, middle = k * q, outWidth = l * s;
        float* px = Pointer(x), pw1 = Pointer(w1t), pw2 = Pointer(w2t), ph = Pointer(h), pg = Pointer(g);
        float* pdx = Pointer(gradX), pdw1 = Pointer(gradW1), pdw2 = Pointer(gradW2);
        int tileRows = wide && batch > 2 * Lanes ? 2 * WideLanes : 2 * Lanes;
        var shape = new Shape(k, q, p, l, s, r, tileRows);
        float* dh = (float*)NativeMemory.AlignedAlloc((nuint)((long)batch * middle * sizeof(float) + 64), 64);
        float* gp = (float*)NativeMemory.AlignedAlloc((nuint)((long)batch * outWidth * sizeof(float) + 64), 64);
        try
        {
            int tiles = (batch + tileRows - 1) / tileRows;
            long bufferFloats = (long)tileRows * (n + middle + outWidth);
            int workers = Math.Min(Environment.ProcessorCount, tiles);
            if (workers <= 1)
            {
                var buffer = (float*)NativeMemory.AlignedAlloc((nuint)(bufferFloats * sizeof(float)), 64);
                try
                {
                    for (int tile = 0; tile < tiles; tile++)
                        BackwardTile(shape, tile, batch, pg, pw1, pw2, pdx, dh, gp, buffer);
                }
                finally
                {
                    NativeMemory.AlignedFree(buffer);
                }
            }
            else
            {
                Parallel.For(0, tiles, new ParallelOptions { MaxDegreeOfParallelism = workers },
                    () => (IntPtr)NativeMemory.AlignedAlloc((nuint)(bufferFloats * sizeof(float)), 64),
                    (tile, _, buffer) =>
                    {
                        BackwardTile(shape, tile, batch, pg, pw1, pw2, pdx, dh, gp, (float*)buffer);
                        return buffer;
                    },
                    buffer => NativeMemory.AlignedFree((void*)buffer));
            }

            var first = new OuterProduct(dh, middle, px, n, pdw1, q, p);
            var second = new OuterProduct(gp, outWidth, ph, middle, pdw2, s, r);
            int chunks1 = (q + WeightRows - 1) / WeightRows, chunks2 = (s + WeightRows - 1) / WeightRows;
            int items1 = k * chunks1, items = items1 + l * chunks2;
            long work = (long)batch * (w1.numel() + w2.numel());
            if (items <= 1 || Environment.ProcessorCount <= 1 || work < (1L << 19))
            {
                for (int item = 0; item < items; item++)
                    WeightGradientItem(item < items1 ? first : second, item < items1 ? item : item - items1, item < items1 ? chunks1 : chunks2, batch, wide);
            }
            else
            {
                Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                    item => WeightGradientItem(item < items1 ? first : second, item < items1 ? item : item - items1, item < items1 ? chunks1 : chunks2, batch, wide));
            }
        }
        finally
        {
            NativeMemory.AlignedFree(dh);
            NativeMemory.AlignedFree(gp);
        }
    }

    /// <summary>Rows of a weight gradient block per work item (a multiple of 4): their operand columns stay in L2 across the row groups.</summary>
    private const int WeightRows = 64;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardTile(Shape d, int tile, int batch, float* g, float* w1t, float* w2t, float* dx, float* dh, float* gp, float* buffer)
    {
        int n = d.K * d.P, middle = d.K * d.Q, outWidth = d.L * d.S, tileRows = d.Tile;
        float* gt = buffer, dht = gt + (long)tileRows * outWidth, dxt = dht + (long)tileRows * middle;
        int b0 = tile * tileRows, rows = Math.Min(tileRows, batch - b0);
        Transpose(g + (long)b0 * outWidth, outWidth, rows, tileRows, gt);
        BackDiagonal2(d, w2t, gt, dht);
        BackDiagonal1(d, w1t, dht, dxt);
        Untranspose(dxt, n, rows, tileRows, dx + (long)b0 * n);
        Untranspose(dht, middle, rows, tileRows, dh + (long)b0 * middle);
        UntransposePermuted(gt, d.S, d.L, rows, tileRows, gp + (long)b0 * outWidth);
    }

    // dht[r·L + l] = Σ_s w2t[l, r, s] · gt[s·L + l]   (w2t[l, r, s] = w2[l, s, r])
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackDiagonal2(Shape d, float* w2t, float* gt, float* dht)
    {
        int tileRows = d.Tile, stride = d.L * tileRows;
        for (int l = 0; l < d.L; l++)
        {
            float* gBlock = gt + (long)l * tileRows;
            float* wBlock = w2t + (long)l * d.R * d.S;
            int r = 0;
            for (; r + 4 <= d.R; r += 4)
                Dot4(tileRows, wBlock + (long)r * d.S, d.S, 1, d.S, gBlock, stride, dht + ((long)r * d.L + l) * tileRows, stride);
            for (; r < d.R; r++)
                Dot1(tileRows, wBlock + (long)r * d.S, 1, d.S, gBlock, stride, dht + ((long)r * d.L + l) * tileRows);
        }
    }

    // dxt[k·P + p] = Σ_q w1t[k, p, q] · dht[k·Q + q]   (w1t[k, p, q] = w1[k, q, p])
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackDiagonal1(Shape d, float* w1t, float* dht, float* dxt)
    {
        int tileRows = d.Tile;
        for (int k = 0; k < d.K; k++)
        {
            float* hBlock = dht + (long)k * d.Q * tileRows;
            float* wBlock = w1t + (long)k * d.P * d.Q;
            int p = 0;
            for (; p + 4 <= d.P; p += 4)
                Dot4(tileRows, wBlock + (long)p * d.Q, d.Q, 1, d.Q, hBlock, tileRows, dxt + ((long)k * d.P + p) * tileRows, tileRows);
            for (; p < d.P; p++)
                Dot1(tileRows, wBlock + (long)p * d.Q, 1, d.Q, hBlock, tileRows, dxt + ((long)k * d.P + p) * tileRows);
        }
    }

    /// <summary>dst[lane·A·C + c·A + a] = src[(a·C + c)·tile + lane] for the first <paramref name="rows"/> lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void UntransposePermuted(float* src, int outer, int inner, int rows, int tileRows, float* dst)
    {
        long width = (long)outer * inner, srcStride = (long)inner * tileRows;
        int lane0 = 0;
        if (Avx.IsSupported)
        {
            int fullOuter = outer / 8 * 8;
            for (; lane0 + 8 <= rows; lane0 += 8)
            {
                float* block = dst + lane0 * width;
                for (int c = 0; c < inner; c++)
                {
                    float* column = src + (long)c * tileRows + lane0;
                    for (int a = 0; a < fullOuter; a += 8)
                        Transpose8x8(column + a * srcStride, srcStride, block + (long)c * outer + a, width);
                    for (int lane = 0; lane < 8; lane++)
                        for (int a = fullOuter; a < outer; a++)
                            block[lane * width + (long)c * outer + a] = column[a * srcStride + lane];
                }
            }
        }
        for (int lane = lane0; lane < rows; lane++)
        {
            float* row = dst + lane * width;
            for (int c = 0; c < inner; c++)
            {
                float* column = src + (long)c * tileRows + lane;
                float* target = row + (long)c * outer;
                for (int a = 0; a < outer; a++)
                    target[a] = column[a * srcStride];
            }
        }
    }

    /// <summary>out[k, q, p] = Σ_b a[b, k·Q + q] · b[b, k·P + p] for a (B, aWidth) and b (B, bWidth), both row-major.</summary>
    private readonly struct OuterProduct(float* a, int aWidth, float* b, int bWidth, float* output, int q, int p)
    {
        public float* A { get; } = a;
        public int AWidth { get; } = aWidth;
        public float* B { get; } = b;
        public int BWidth { get; } = bWidth;
        public float* Out { get; } = output;
        public int Q { get; } = q;
        public int P { get; } = p;
    }

    /// <summary>Batch rows per packed chunk of a weight-gradient work item; chunk sums are added to the output in batch order.</summary>
    private const int BatchChunk = 256;

    /// <summary>
    /// One block k and a range of <see cref="WeightRows"/> output rows, summed over the batch in chunks of
    /// <see cref="BatchChunk"/> rows. Each chunk's operand columns are first packed contiguously: read in place, the
    /// rows are a power-of-two width apart and map to a handful of cache sets.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightGradientItem(OuterProduct o, int item, int chunks, int batch, bool wide)
    {
        int k = item / chunks, q0 = (item % chunks) * WeightRows, q1 = Math.Min(o.Q, q0 + WeightRows);
        int rowsQ = q1 - q0, qv = rowsQ / 4 * 4;
        float* a = o.A + (long)k * o.Q + q0, b = o.B + (long)k * o.P, output = o.Out + ((long)k * o.Q + q0) * o.P;
        int width = wide ? 2 * WideLanes : 2 * Lanes;
        float* packedA = (float*)NativeMemory.AlignedAlloc((nuint)(BatchChunk * WeightRows * sizeof(float)), 64);
        float* packedB = (float*)NativeMemory.AlignedAlloc((nuint)(BatchChunk * 2 * WideLanes * sizeof(float)), 64);
        try
        {
            for (int b0 = 0; b0 < batch; b0 += BatchChunk)
            {
                int rows = Math.Min(BatchChunk, batch - b0);
                bool accumulate = b0 > 0;
                Pack(a + (long)b0 * o.AWidth, o.AWidth, rows, rowsQ, packedA);
                for (int p = 0; p < o.P; p += width)
                {
                    int cols = Math.Min(width, o.P - p);
                    Pack(b + (long)b0 * o.BWidth + p, o.BWidth, rows, cols, packedB);
                    float* block = output + p;
                    int c = 0;
                    if (wide && cols == 2 * WideLanes)
                    {
                        for (int q = 0; q < qv; q += 4)
                            Outer4x2Wide(packedA + q, rowsQ, packedB, cols, rows, block + (long)q * o.P, o.P, accumulate);
                        c = cols;
                    }
                    else if (wide && cols >= WideLanes)
                    {
                        for (int q = 0; q < qv; q += 4)
                            Outer4x1Wide(packedA + q, rowsQ, packedB, cols, rows, block + (long)q * o.P, o.P, accumulate);
                        c = WideLanes;
                    }
                    else if (cols == 2 * Lanes)
                    {
                        for (int q = 0; q < qv; q += 4)
                            Outer4x2Narrow(packedA + q, rowsQ, packedB, cols, rows, block + (long)q * o.P, o.P, accumulate);
                        c = cols;
                    }
                    for (; c + Lanes <= cols; c += Lanes)
                        for (int q = 0; q < qv; q += 4)
                            Outer4x1Narrow(packedA + q, rowsQ, packedB + c, cols, rows, block + (long)q * o.P + c, o.P, accumulate);
                    // Columns past the last full vector, for the rows handled above.
                    for (int q = 0; q < qv; q++)
                        for (int cc = c; cc < cols; cc++)
                            OuterScalar(packedA + q, rowsQ, packedB + cc, cols, rows, block + (long)q * o.P + cc, accumulate);
                    // Rows past the last group of four: one row of vectors, then scalars.
                    for (int q = qv; q < rowsQ; q++)
                    {
                        int cc = 0;
                        for (; cc + Lanes <= cols; cc += Lanes)
                            Outer1x1Narrow(packedA + q, rowsQ, packedB + cc, cols, rows, block + (long)q * o.P + cc, accumulate);
                        for (; cc < cols; cc++)
                            OuterScalar(packedA + q, rowsQ, packedB + cc, cols, rows, block + (long)q * o.P + cc, accumulate);
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(packedA);
            NativeMemory.AlignedFree(packedB);
        }
    }

    /// <summary>dst[i·cols + j] = src[i·stride + j] for i &lt; rows, j &lt; cols.</summary>
    private static void Pack(float* src, int stride, int rows, int cols, float* dst)
    {
        long bytes = (long)cols * sizeof(float);
        for (int i = 0; i < rows; i++)
            Buffer.MemoryCopy(src + (long)i * stride, dst + (long)i * cols, bytes, bytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(Vector512<float> v, float* output, bool accumulate) =>
        (accumulate ? v + Vector512.Load(output) : v).Store(output);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(Vector256<float> v, float* output, bool accumulate) =>
        (accumulate ? v + Vector256.Load(output) : v).Store(output);

    /// <summary>out[j·outStride + v] (+)= Σ_i a[i·aStride + j] · b[i·bStride + v] for j &lt; 4 and 32 columns v (added to out when accumulating).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x2Wide(float* a, int aStride, float* b, int bStride, int batch, float* output, int outStride, bool accumulate)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
        {
            var v0 = Vector512.Load(b);
            var v1 = Vector512.Load(b + WideLanes);
            var s0 = Vector512.Create(a[0]);
            var s1 = Vector512.Create(a[1]);
            var s2 = Vector512.Create(a[2]);
            var s3 = Vector512.Create(a[3]);
            a0 = Vector512.FusedMultiplyAdd(s0, v0, a0);
            a1 = Vector512.FusedMultiplyAdd(s0, v1, a1);
            b0 = Vector512.FusedMultiplyAdd(s1, v0, b0);
            b1 = Vector512.FusedMultiplyAdd(s1, v1, b1);
            c0 = Vector512.FusedMultiplyAdd(s2, v0, c0);
            c1 = Vector512.FusedMultiplyAdd(s2, v1, c1);
            e0 = Vector512.FusedMultiplyAdd(s3, v0, e0);
            e1 = Vector512.FusedMultiplyAdd(s3, v1, e1);
        }
        Put(a0, output, accumulate);
        Put(a1, output + WideLanes, accumulate);
        Put(b0, output + outStride, accumulate);
        Put(b1, output + outStride + WideLanes, accumulate);
        Put(c0, output + 2 * outStride, accumulate);
        Put(c1, output + 2 * outStride + WideLanes, accumulate);
        Put(e0, output + 3 * outStride, accumulate);
        Put(e1, output + 3 * outStride + WideLanes, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x1Wide(float* a, int aStride, float* b, int bStride, int batch, float* output, int outStride, bool accumulate)
    {
        Vector512<float> a0 = default, b0 = default, c0 = default, e0 = default;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
        {
            var v0 = Vector512.Load(b);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), v0, a0);
            b0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), v0, b0);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), v0, c0);
            e0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), v0, e0);
        }
        Put(a0, output, accumulate);
        Put(b0, output + outStride, accumulate);
        Put(c0, output + 2 * outStride, accumulate);
        Put(e0, output + 3 * outStride, accumulate);
    }

    /// <summary>out[j·outStride + v] = Σ_i a[i·aStride + j] · b[i·bStride + v] for j &lt; 4 and 16 columns v.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x2Narrow(float* a, int aStride, float* b, int bStride, int batch, float* output, int outStride, bool accumulate)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
        {
            var v0 = Vector256.Load(b);
            var v1 = Vector256.Load(b + Lanes);
            var s0 = Vector256.Create(a[0]);
            var s1 = Vector256.Create(a[1]);
            var s2 = Vector256.Create(a[2]);
            var s3 = Vector256.Create(a[3]);
            a0 = Vector256.FusedMultiplyAdd(s0, v0, a0);
            a1 = Vector256.FusedMultiplyAdd(s0, v1, a1);
            b0 = Vector256.FusedMultiplyAdd(s1, v0, b0);
            b1 = Vector256.FusedMultiplyAdd(s1, v1, b1);
            c0 = Vector256.FusedMultiplyAdd(s2, v0, c0);
            c1 = Vector256.FusedMultiplyAdd(s2, v1, c1);
            e0 = Vector256.FusedMultiplyAdd(s3, v0, e0);
            e1 = Vector256.FusedMultiplyAdd(s3, v1, e1);
        }
        Put(a0, output, accumulate);
        Put(a1, output + Lanes, accumulate);
        Put(b0, output + outStride, accumulate);
        Put(b1, output + outStride + Lanes, accumulate);
        Put(c0, output + 2 * outStride, accumulate);
        Put(c1, output + 2 * outStride + Lanes, accumulate);
        Put(e0, output + 3 * outStride, accumulate);
        Put(e1, output + 3 * outStride + Lanes, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Outer4x1Narrow(float* a, int aStride, float* b, int bStride, int batch, float* output, int outStride, bool accumulate)
    {
        Vector256<float> a0 = default, b0 = default, c0 = default, e0 = default;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
        {
            var v0 = Vector256.Load(b);
            a0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[0]), v0, a0);
            b0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[1]), v0, b0);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[2]), v0, c0);
            e0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[3]), v0, e0);
        }
        Put(a0, output, accumulate);
        Put(b0, output + outStride, accumulate);
        Put(c0, output + 2 * outStride, accumulate);
        Put(e0, output + 3 * outStride, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Outer1x1Narrow(float* a, int aStride, float* b, int bStride, int batch, float* output, bool accumulate)
    {
        Vector256<float> a0 = default;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
            a0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[0]), Vector256.Load(b), a0);
        Put(a0, output, accumulate);
    }

    private static void OuterScalar(float* a, int aStride, float* b, int bStride, int batch, float* output, bool accumulate)
    {
        float sum = 0;
        for (int i = 0; i < batch; i++, a += aStride, b += bStride)
            sum = MathF.FusedMultiplyAdd(*a, *b, sum);
        *output = accumulate ? sum + *output : sum;
    }

    /// <summary>The data of a contiguous CPU tensor; libtorch owns the memory, so the address is stable.</summary>
    private static float* Pointer(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    private readonly record struct Shape(int K, int Q, int P, int L, int S, int R, int Tile);

    /// <summary>dst[i·tile + lane] = src[lane·width + i]; lanes past <paramref name="rows"/> are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose(float* src, int width, int rows, int tileRows, float* dst)
    {
        int lane0 = 0;
        if (Avx.IsSupported)
        {
            int fullWidth = width / 8 * 8;
            for (; lane0 + 8 <= rows; lane0 += 8)
            {
                float* block = src + (long)lane0 * width;
                for (int i = 0; i < fullWidth; i += 8)
                    Transpose8x8(block + i, width, dst + (long)i * tileRows + lane0, tileRows);
                for (int lane = lane0; lane < lane0 + 8; lane++)
                    for (int i = fullWidth; i < width; i++)
                        dst[(long)i * tileRows + lane] = src[(long)lane * width + i];
            }
        }
        for (int lane = lane0; lane < tileRows; lane++)
        {
            float* row = src + (long)lane * width;
            if (lane < rows)
            {
                for (int i = 0; i < width; i++)
                    dst[(long)i * tileRows + lane] = row[i];
            }
            else
            {
                for (int i = 0; i < width; i++)
                    dst[(long)i * tileRows + lane] = 0;
            }
        }
    }

    /// <summary>dst[lane·width + i] = src[i·tile + lane] for the first <paramref name="rows"/> lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Untranspose(float* src, int width, int rows, int tileRows, float* dst)
    {
        int lane0 = 0;
        if (Avx.IsSupported)
        {
            int fullWidth = width / 8 * 8;
            for (; lane0 + 8 <= rows; lane0 += 8)
            {
                float* block = dst + (long)lane0 * width;
                for (int i = 0; i < fullWidth; i += 8)
                    Transpose8x8(src + (long)i * tileRows + lane0, tileRows, block + i, width);
                for (int lane = lane0; lane < lane0 + 8; lane++)
                    for (int i = fullWidth; i < width; i++)
                        dst[(long)lane * width + i] = src[(long)i * tileRows + lane];
            }
        }
        for (int lane = lane0; lane < rows; lane++)
        {
            float* row = dst + (long)lane * width;
            for (int i = 0; i < width; i++)
                row[i] = src[(long)i * tileRows + lane];
        }
    }

    /// <summary>dst[j·dstStride + i] = src[i·srcStride + j] for i, j &lt; 8: an 8×8 block transposed in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, long srcStride, float* dst, long dstStride)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + 2 * srcStride);
        var r3 = Avx.LoadVector256(src + 3 * srcStride);
        var r4 = Avx.LoadVector256(src + 4 * srcStride);
        var r5 = Avx.LoadVector256(src + 5 * srcStride);
        var r6 = Avx.LoadVector256(src + 6 * srcStride);
        var r7 = Avx.LoadVector256(src + 7 * srcStride);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(u3, u7, 0x31));
    }

    // ht[k·Q + q] = Σ_p w1[k, q, p] · xt[k·P + p]   (each entry a tile of rows, one per lane)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockDiagonal1(Shape d, float* w1, float* xt, float* ht)
    {
        int tileRows = d.Tile;
        for (int k = 0; k < d.K; k++)
        {
            float* xBlock = xt + (long)k * d.P * tileRows;
            int q = 0;
            for (; q + 4 <= d.Q; q += 4)
            {
                float* w = w1 + ((long)k * d.Q + q) * d.P;
                Dot4(tileRows, w, d.P, 1, d.P, xBlock, tileRows, ht + ((long)k * d.Q + q) * tileRows, tileRows);
            }
            for (; q < d.Q; q++)
                Dot1(tileRows, w1 + ((long)k * d.Q + q) * d.P, 1, d.P, xBlock, tileRows, ht + ((long)k * d.Q + q) * tileRows);
        }
    }

    // yt[s·L + l] = Σ_r w2[l, s, r] · ht[r·L + l]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockDiagonal2(Shape d, float* w2, float* ht, float* yt)
    {
        int tileRows = d.Tile;
        for (int l = 0; l < d.L; l++)
        {
            float* hBlock = ht + (long)l * tileRows;
            int stride = d.L * tileRows;
            int s = 0;
            for (; s + 4 <= d.S; s += 4)
            {
                float* w = w2 + ((long)l * d.S + s) * d.R;
                Dot4(tileRows, w, d.R, 1, d.R, hBlock, stride, yt + ((long)s * d.L + l) * tileRows, stride);
            }
            for (; s < d.S; s++)
                Dot1(tileRows, w2 + ((long)l * d.S + s) * d.R, 1, d.R, hBlock, stride, yt + ((long)s * d.L + l) * tileRows);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(int tile, float* w, int wj, int wi, int len, float* input, int inStride, float* output, int outStride)
    {
        if (tile == 2 * WideLanes)
            Dot4Wide(w, wj, wi, len, input, inStride, output, outStride);
        else
            Dot4Narrow(w, wj, wi, len, input, inStride, output, outStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot1(int tile, float* w, int wi, int len, float* input, int inStride, float* output)
    {
        if (tile == 2 * WideLanes)
            Dot1Wide(w, wi, len, input, inStride, output);
        else
            Dot1Narrow(w, wi, len, input, inStride, output);
    }

    /// <summary>Four outputs at once: out[j] = Σ_i w[j·wj + i·wi] · in[i·inStride], 32 lanes each, 8 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4Wide(float* w, int wj, int wi, int len, float* input, int inStride, float* output, int outStride)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        float* w0 = w, wa = w + wj, wb = w + 2 * wj, wc = w + 3 * wj;
        for (int i = 0; i < len; i++, w0 += wi, wa += wi, wb += wi, wc += wi)
        {
            float* v = input + (long)i * inStride;
            var v0 = Vector512.Load(v);
            var v1 = Vector512.Load(v + WideLanes);
            var s0 = Vector512.Create(*w0);
            var s1 = Vector512.Create(*wa);
            var s2 = Vector512.Create(*wb);
            var s3 = Vector512.Create(*wc);
            a0 = Vector512.FusedMultiplyAdd(s0, v0, a0);
            a1 = Vector512.FusedMultiplyAdd(s0, v1, a1);
            b0 = Vector512.FusedMultiplyAdd(s1, v0, b0);
            b1 = Vector512.FusedMultiplyAdd(s1, v1, b1);
            c0 = Vector512.FusedMultiplyAdd(s2, v0, c0);
            c1 = Vector512.FusedMultiplyAdd(s2, v1, c1);
            e0 = Vector512.FusedMultiplyAdd(s3, v0, e0);
            e1 = Vector512.FusedMultiplyAdd(s3, v1, e1);
        }
        a0.Store(output);
        a1.Store(output + WideLanes);
        b0.Store(output + outStride);
        b1.Store(output + outStride + WideLanes);
        c0.Store(output + 2 * outStride);
        c1.Store(output + 2 * outStride + WideLanes);
        e0.Store(output + 3 * outStride);
        e1.Store(output + 3 * outStride + WideLanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1Wide(float* w, int wi, int len, float* input, int inStride, float* output)
    {
        Vector512<float> a0 = default, a1 = default;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var s0 = Vector512.Create(w[(long)i * wi]);
            a0 = Vector512.FusedMultiplyAdd(s0, Vector512.Load(v), a0);
            a1 = Vector512.FusedMultiplyAdd(s0, Vector512.Load(v + WideLanes), a1);
        }
        a0.Store(output);
        a1.Store(output + WideLanes);
    }

    /// <summary>Four outputs at once: out[j] = Σ_i w[j·wj + i·wi] · in[i·inStride], 16 lanes each, 8 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4Narrow(float* w, int wj, int wi, int len, float* input, int inStride, float* output, int outStride)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        float* w0 = w, wa = w + wj, wb = w + 2 * wj, wc = w + 3 * wj;
        for (int i = 0; i < len; i++, w0 += wi, wa += wi, wb += wi, wc += wi)
        {
            float* v = input + (long)i * inStride;
            var v0 = Vector256.Load(v);
            var v1 = Vector256.Load(v + Lanes);
            var s0 = Vector256.Create(*w0);
            var s1 = Vector256.Create(*wa);
            var s2 = Vector256.Create(*wb);
            var s3 = Vector256.Create(*wc);
            a0 = Vector256.FusedMultiplyAdd(s0, v0, a0);
            a1 = Vector256.FusedMultiplyAdd(s0, v1, a1);
            b0 = Vector256.FusedMultiplyAdd(s1, v0, b0);
            b1 = Vector256.FusedMultiplyAdd(s1, v1, b1);
            c0 = Vector256.FusedMultiplyAdd(s2, v0, c0);
            c1 = Vector256.FusedMultiplyAdd(s2, v1, c1);
            e0 = Vector256.FusedMultiplyAdd(s3, v0, e0);
            e1 = Vector256.FusedMultiplyAdd(s3, v1, e1);
        }
        a0.Store(output);
        a1.Store(output + Lanes);
        b0.Store(output + outStride);
        b1.Store(output + outStride + Lanes);
        c0.Store(output + 2 * outStride);
        c1.Store(output + 2 * outStride + Lanes);
        e0.Store(output + 3 * outStride);
        e1.Store(output + 3 * outStride + Lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1Narrow(float* w, int wi, int len, float* input, int inStride, float* output)
    {
        Vector256<float> a0 = default, a1 = default;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var s0 = Vector256.Create(w[(long)i * wi]);
            a0 = Vector256.FusedMultiplyAdd(s0, Vector256.Load(v), a0);
            a1 = Vector256.FusedMultiplyAdd(s0, Vector256.Load(v + Lanes), a1);
        }
        a0.Store(output);
        a1.Store(output + Lanes);
    }
}
