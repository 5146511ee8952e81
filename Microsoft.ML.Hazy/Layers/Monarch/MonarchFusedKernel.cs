using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers.Monarch;

/// <summary>
/// A fused CPU kernel for <see cref="MonarchMultiply.Bmm"/> on float32: tiles of 16 rows (32 with AVX-512) are transposed so that
/// SIMD lanes hold rows, which turns both permutations into index arithmetic; each block-diagonal product is then
/// a sequence of broadcast-weight FMAs over register tiles, with no reshape/permute copies and no small GEMM calls.
/// The backward pass uses libtorch <c>bmm</c> for the four gradient products.
/// </summary>
internal static unsafe class MonarchFusedKernel
{
    private const int Lanes = 8;
    private const int WideLanes = 16;

    /// <summary>Use 512-bit vectors (tiles of 32 rows) where the hardware has them; tests switch it off to cover the 256-bit path.</summary>
    internal static bool UseVector512 { get; set; } = Vector512.IsHardwareAccelerated;

    /// <summary>Whether the kernel can run here (AVX2-class 256-bit vectors).</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    /// <summary>Whether <see cref="Multiply"/> applies to these tensors.</summary>
    public static bool Applies(Tensor x, Tensor w1, Tensor w2) =>
        IsSupported && x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32
        && w1.dtype == ScalarType.Float32 && w2.dtype == ScalarType.Float32
        && w1.device_type == DeviceType.CPU && w2.device_type == DeviceType.CPU;

    /// <summary>y = Bmm(x, w1, w2) for x (B, k·p), through the fused kernel, differentiable.</summary>
    public static Tensor Multiply(Tensor x, Tensor w1, Tensor w2) => MonarchFunction.apply(x, w1, w2);

    private sealed class MonarchFunction : autograd.SingleTensorFunction<MonarchFunction>
    {
        public override string Name => "MonarchFusedMultiply";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var x = ((Tensor)vars[0]).contiguous();
            var w1 = ((Tensor)vars[1]).contiguous();
            var w2 = ((Tensor)vars[2]).contiguous();
            long batch = x.shape[0];
            long k = w1.shape[0], q = w1.shape[1];
            long l = w2.shape[0], s = w2.shape[1];
            bool needGrad = ((Tensor)vars[0]).requires_grad || ((Tensor)vars[1]).requires_grad || ((Tensor)vars[2]).requires_grad;
            var y = empty(batch, l * s, dtype: ScalarType.Float32);
            Tensor? h = needGrad ? empty(batch, k * q, dtype: ScalarType.Float32) : null;
            Run(x, w1, w2, y, h);
            if (needGrad)
                ctx.save_for_backward(new List<Tensor> { x, w1, w2, h! });
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            Tensor x = saved[0], w1 = saved[1], w2 = saved[2], h = saved[3];
            long batch = x.shape[0];
            long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
            long l = w2.shape[0], s = w2.shape[1], r = w2.shape[2];
            // y[b, s·L + l] = Σ_r w2[l, s, r] h[b, r·L + l];  h[b, k·Q + q] = Σ_p w1[k, q, p] x[b, k·P + p]
            var gT = grad.reshape(batch, s, l).permute(2, 1, 0);         // (L, S, B)
            var hp = h.view(batch, r, l).permute(2, 0, 1);                    // (L, B, R)
            var gradW2 = bmm(gT, hp);
            var gradHp = bmm(gT.transpose(1, 2), w2);                        // (L, B, R)
            var gradH = gradHp.permute(1, 2, 0).reshape(batch, k, q).transpose(0, 1);   // (K, B, Q)
            var xk = x.view(batch, k, p).transpose(0, 1);                     // (K, B, P)
            var gradW1 = bmm(gradH.transpose(1, 2), xk);
            var gradX = bmm(gradH, w1).transpose(0, 1).reshape(batch, k * p);
            return new List<Tensor> { gradX.MoveToOuterDisposeScope(), gradW1.MoveToOuterDisposeScope(), gradW2.MoveToOuterDisposeScope() };
        }
    }

    /// <summary>Writes y (B, L·S) and, when given, h (B, K·Q) in the natural (unpermuted) layout.</summary>
    private static void Run(Tensor x, Tensor w1, Tensor w2, Tensor y, Tensor? h)
    {
        int batch = (int)x.shape[0];
        int k = (int)w1.shape[0], q = (int)w1.shape[1], p = (int)w1.shape[2];
        int l = (int)w2.shape[0], s = (int)w2.shape[1], r = (int)w2.shape[2];
        int n = k * p, middle = k * q, outWidth = l * s;
        float* px = Pointer(x), pw1 = Pointer(w1), pw2 = Pointer(w2), py = Pointer(y);
        float* ph = h is null ? null : Pointer(h);
        int tileRows = UseVector512 && batch > 2 * Lanes ? 2 * WideLanes : 2 * Lanes;
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
            Untranspose(ht, middle, rows, tileRows, h + (long)b0 * middle);
    }

    /// <summary>The data of a contiguous CPU tensor; libtorch owns the memory, so the address is stable.</summary>
    private static float* Pointer(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    private readonly record struct Shape(int K, int Q, int P, int L, int S, int R, int Tile);

    /// <summary>dst[i·tile + lane] = src[lane·width + i]; lanes past <paramref name="rows"/> are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose(float* src, int width, int rows, int tileRows, float* dst)
    {
        for (int lane = 0; lane < tileRows; lane++)
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Untranspose(float* src, int width, int rows, int tileRows, float* dst)
    {
        for (int lane = 0; lane < rows; lane++)
        {
            float* row = dst + (long)lane * width;
            for (int i = 0; i < width; i++)
                row[i] = src[(long)i * tileRows + lane];
        }
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
                Dot4(tileRows, w, d.P, xBlock, tileRows, ht + ((long)k * d.Q + q) * tileRows, tileRows);
            }
            for (; q < d.Q; q++)
                Dot1(tileRows, w1 + ((long)k * d.Q + q) * d.P, d.P, xBlock, tileRows, ht + ((long)k * d.Q + q) * tileRows);
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
                Dot4(tileRows, w, d.R, hBlock, stride, yt + ((long)s * d.L + l) * tileRows, stride);
            }
            for (; s < d.S; s++)
                Dot1(tileRows, w2 + ((long)l * d.S + s) * d.R, d.R, hBlock, stride, yt + ((long)s * d.L + l) * tileRows);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(int tile, float* w, int len, float* input, int inStride, float* output, int outStride)
    {
        if (tile == 2 * WideLanes)
            Dot4Wide(w, len, input, inStride, output, outStride);
        else
            Dot4Narrow(w, len, input, inStride, output, outStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot1(int tile, float* w, int len, float* input, int inStride, float* output)
    {
        if (tile == 2 * WideLanes)
            Dot1Wide(w, len, input, inStride, output);
        else
            Dot1Narrow(w, len, input, inStride, output);
    }

    /// <summary>Four outputs at once: out[j] = Σ_i w[j·len + i] · in[i·inStride], 32 lanes each, 8 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4Wide(float* w, int len, float* input, int inStride, float* output, int outStride)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        float* w0 = w, wa = w + len, wb = w + 2 * len, wc = w + 3 * len;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var v0 = Vector512.Load(v);
            var v1 = Vector512.Load(v + WideLanes);
            var s0 = Vector512.Create(w0[i]);
            var s1 = Vector512.Create(wa[i]);
            var s2 = Vector512.Create(wb[i]);
            var s3 = Vector512.Create(wc[i]);
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
    private static void Dot1Wide(float* w, int len, float* input, int inStride, float* output)
    {
        Vector512<float> a0 = default, a1 = default;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var s0 = Vector512.Create(w[i]);
            a0 = Vector512.FusedMultiplyAdd(s0, Vector512.Load(v), a0);
            a1 = Vector512.FusedMultiplyAdd(s0, Vector512.Load(v + WideLanes), a1);
        }
        a0.Store(output);
        a1.Store(output + WideLanes);
    }

    /// <summary>Four outputs at once: out[j] = Σ_i w[j·len + i] · in[i·inStride], 16 lanes each, 8 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4Narrow(float* w, int len, float* input, int inStride, float* output, int outStride)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        float* w0 = w, wa = w + len, wb = w + 2 * len, wc = w + 3 * len;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var v0 = Vector256.Load(v);
            var v1 = Vector256.Load(v + Lanes);
            var s0 = Vector256.Create(w0[i]);
            var s1 = Vector256.Create(wa[i]);
            var s2 = Vector256.Create(wb[i]);
            var s3 = Vector256.Create(wc[i]);
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
    private static void Dot1Narrow(float* w, int len, float* input, int inStride, float* output)
    {
        Vector256<float> a0 = default, a1 = default;
        for (int i = 0; i < len; i++)
        {
            float* v = input + (long)i * inStride;
            var s0 = Vector256.Create(w[i]);
            a0 = Vector256.FusedMultiplyAdd(s0, Vector256.Load(v), a0);
            a1 = Vector256.FusedMultiplyAdd(s0, Vector256.Load(v + Lanes), a1);
        }
        a0.Store(output);
        a1.Store(output + Lanes);
    }
}
