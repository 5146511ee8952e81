using Microsoft.ML.Hazy.Gpu.Runtime;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Kernels.S4D;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Gpu;

/// <summary>
/// The GPU assembly's kernels, run on ILGPU's CPU accelerator over TorchSharp CPU tensors through the same provider and
/// autograd code as on CUDA, against float64 libtorch references (an independent computation) and Hazy's CPU kernels.
/// Shapes are tiny (the simulator runs every thread of a group as an OS thread).
/// </summary>
[TestFixture]
public sealed class GpuKernelTests
{
    private CpuAcceleratorBackend _backend = null!;
    private GpuKernels _kernels = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _backend = new CpuAcceleratorBackend();
        _kernels = new GpuKernels(_backend, DeviceType.CPU);
    }

    [OneTimeTearDown]
    public void TearDown() => _backend.Dispose();

    private static IEnumerable<TestCaseData> AttentionCases()
    {
        yield return new TestCaseData(13, 11, new FlashAttentionOptions { QueryBlockSize = 4, KeyBlockSize = 4 }).SetName("Attention_DenseRaggedTails");
        yield return new TestCaseData(7, 12, new FlashAttentionOptions { Causal = true, QueryBlockSize = 4, KeyBlockSize = 4, Scale = 0.3 }).SetName("Attention_CausalFewerQueries_ExplicitScale");
        yield return new TestCaseData(12, 7, new FlashAttentionOptions { Causal = true, QueryBlockSize = 4, KeyBlockSize = 4 }).SetName("Attention_CausalMoreQueries_LeadingRowsSeeNothing");
        yield return new TestCaseData(9, 10, new FlashAttentionOptions { KeyLengths = [6, 0], QueryBlockSize = 4, KeyBlockSize = 4 }).SetName("Attention_KeyPadding_EmptySequence");
        var blocks = new bool[3, 3] { { true, false, false }, { false, false, false }, { true, true, false } };
        yield return new TestCaseData(10, 9, new FlashAttentionOptions { BlockMask = new BlockSparseMask(blocks, 4, 3), KeyLengths = [9, 5] }).SetName("Attention_BlockSparse_EmptyBlockRow_WithPadding");
        yield return new TestCaseData(8, 8, new FlashAttentionOptions { BlockMask = BlockSparseMask.Causal(8, 8, 4), Causal = true }).SetName("Attention_BlockCausalMask_AndCausal");
    }

    [TestCaseSource(nameof(AttentionCases))]
    public void AttentionMatchesFloat64ReferenceForwardAndBackward(int lq, int lk, FlashAttentionOptions options)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var q = randn([2, 2, lq, 8], generator: g).requires_grad_(true);
        var k = randn([2, 2, lk, 8], generator: g).requires_grad_(true);
        var v = randn([2, 2, lk, 8], generator: g).requires_grad_(true);
        var dO = randn([2, 2, lq, 8], generator: g);

        var (o, lse) = FlashAttention.ApplyWithLogSumExp(q, k, v, options, _kernels.Attention);
        var grads = autograd.grad([o], [q, k, v], [dO]);

        var q64 = q.detach().to(ScalarType.Float64).requires_grad_(true);
        var k64 = k.detach().to(ScalarType.Float64).requires_grad_(true);
        var v64 = v.detach().to(ScalarType.Float64).requires_grad_(true);
        var (o64, lse64) = ReferenceAttention.Forward(ReferenceAttention.ShapeOf(q64, k64, v64), q64, k64, v64, options);
        var grads64 = autograd.grad([o64], [q64, k64, v64], [dO.to(ScalarType.Float64)]);

        AssertClose(o, o64, 2e-5, "O");
        var finite = isfinite(lse64);
        Assert.That(isfinite(lse).eq(finite).all().item<bool>(), "fully masked rows (lse = −∞) differ");
        AssertClose(lse.masked_select(finite), lse64.masked_select(finite), 2e-5, "lse");
        string[] names = ["dQ", "dK", "dV"];
        for (int i = 0; i < 3; i++)
            AssertClose(grads[i], grads64[i], 5e-5, names[i]);
    }

    [Test]
    public void AttentionMatchesHazyCpuKernel()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        var q = randn([1, 3, 17, 16], generator: g);
        var k = randn([1, 3, 21, 16], generator: g);
        var v = randn([1, 3, 21, 16], generator: g);
        var options = new FlashAttentionOptions { Causal = true, QueryBlockSize = 8, KeyBlockSize = 8 };
        var gpu = FlashAttention.Apply(q, k, v, options, _kernels.Attention);
        var cpu = FlashAttention.Apply(q, k, v, options, CpuSimdKernels.Default.Attention);
        AssertClose(gpu, cpu, 1e-5, "O");
    }

    [Test]
    public void AttentionWithDropoutFallsBackToReference()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var q = randn([1, 1, 5, 4], generator: g);
        var options = new FlashAttentionOptions { DropoutProbability = 0.5, DropoutSeed = 11 };
        var gpu = FlashAttention.Apply(q, q, q, options, _kernels.Attention);
        var (reference, lse) = ReferenceAttention.Forward(ReferenceAttention.ShapeOf(q, q, q), q, q, q, options);
        lse.Dispose();
        AssertClose(gpu, reference, 1e-6, "O");
    }

    [Test]
    public void S4DKernelMatchesFloat64ReferenceForwardAndBackward()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(17);
        const int channels = 2, heads = 3, modes = 4;
        const long length = 37;   // block length 8: five blocks, the last one ragged
        var c = complex(randn([channels, heads, modes], generator: g), randn([channels, heads, modes], generator: g)).requires_grad_(true);
        var logDA = complex(rand([heads, modes], generator: g).mul(-0.2), rand([heads, modes], generator: g).mul(3.0)).requires_grad_(true);
        var upstream = randn([channels, heads, length], generator: g);

        var kernel = _kernels.S4D!.Kernel(c, logDA, length);
        var grads = autograd.grad([kernel], [c, logDA], [upstream]);

        var c64 = c.detach().to(ScalarType.ComplexFloat64).requires_grad_(true);
        var l64 = logDA.detach().to(ScalarType.ComplexFloat64).requires_grad_(true);
        var kernel64 = S4DMath.Kernel(c64, l64, length);
        var grads64 = autograd.grad([kernel64], [c64, l64], [upstream.to(ScalarType.Float64)]);

        AssertClose(kernel, kernel64, 5e-5, "K");
        AssertClose(view_as_real(grads[0]), view_as_real(grads64[0]), 5e-4, "dC̃");
        AssertClose(view_as_real(grads[1]), view_as_real(grads64[1]), 5e-3, "d log Ā");
    }

    [Test]
    public void S4DReferenceBackwardFormulasMatchTheKernelBackward()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(23);
        var c = complex(randn([2, 2, 3], generator: g), randn([2, 2, 3], generator: g)).requires_grad_(true);
        var outer = complex(randn([2, 3, 3], generator: g), randn([2, 3, 3], generator: g)).requires_grad_(true);
        var inner = complex(randn([2, 3, 4], generator: g), randn([2, 3, 4], generator: g)).requires_grad_(true);
        var call = new S4DCall(_kernels, 10, 4);
        var kernel = GpuS4DFunction.apply(c, outer, inner, call);
        var upstream = randn(kernel.shape, generator: g);
        var grads = autograd.grad([kernel], [c, outer, inner], [upstream]);
        var (dc, dOuter, dInner) = GpuS4DFunction.ReferenceBackward(c.detach(), outer.detach(), inner.detach(), upstream, call);
        AssertClose(view_as_real(grads[0]), view_as_real(dc), 1e-4, "dC̃");
        AssertClose(view_as_real(grads[1]), view_as_real(dOuter), 1e-4, "d outer");
        AssertClose(view_as_real(grads[2]), view_as_real(dInner), 1e-4, "d inner");
    }

    [TestCase(5, 4, 3, 2, 6, 2, TestName = "Monarch_SquareBlocks")]
    [TestCase(3, 2, 6, 5, 4, 3, TestName = "Monarch_RectangularBlocks")]
    public void MonarchMatchesFloat64BmmForwardAndBackward(int batch, int k, int q, int p, int l, int s)
    {
        int r = k * q / l;
        using var scope = NewDisposeScope();
        var g = new Generator(29);
        var x = randn([batch, k * p], generator: g).requires_grad_(true);
        var w1 = randn([k, q, p], generator: g).requires_grad_(true);
        var w2 = randn([l, s, r], generator: g).requires_grad_(true);
        var y = MonarchMultiply.Multiply(x, w1, w2, _kernels.Monarch);
        var upstream = randn(y.shape, generator: g);
        var grads = autograd.grad([y], [x, w1, w2], [upstream]);
        var x64 = x.detach().to(ScalarType.Float64).requires_grad_(true);
        var w164 = w1.detach().to(ScalarType.Float64).requires_grad_(true);
        var w264 = w2.detach().to(ScalarType.Float64).requires_grad_(true);
        var y64 = MonarchMultiply.Bmm(x64, w164, w264);
        var grads64 = autograd.grad([y64], [x64, w164, w264], [upstream.to(ScalarType.Float64)]);
        AssertClose(y, y64, 1e-5, "y");
        for (int i = 0; i < 3; i++)
            AssertClose(grads[i], grads64[i], 1e-4, $"gradient {i}");
    }

    [Test]
    public void DispatchPredicateTakesOnlyItsDeviceAndFloat32()
    {
        var cuda = new GpuKernels(_backend, DeviceType.CUDA);
        Assert.That(cuda.Supports(DeviceType.CUDA, ScalarType.Float32), Is.True);
        Assert.That(cuda.Supports(DeviceType.CPU, ScalarType.Float32), Is.False);
        Assert.That(cuda.Supports(DeviceType.CUDA, ScalarType.Float64), Is.False);
        Assert.That(cuda.Supports(DeviceType.CUDA, ScalarType.BFloat16), Is.False);
        // A preferred provider that cannot take CPU tensors resolves to the reference, not to itself.
        Assert.That(KernelRegistry.Resolve(cuda.Attention, DeviceType.CPU, ScalarType.Float32), Is.SameAs(KernelRegistry.Reference.Attention));
    }

    internal static void AssertClose(Tensor actual, Tensor expected, double tolerance, string what)
    {
        Assert.That(actual.shape, Is.EqualTo(expected.shape), $"{what}: shape");
        using var diff = actual.to(ScalarType.Float64).sub(expected.to(ScalarType.Float64)).abs();
        double worst = diff.numel() == 0 ? 0 : diff.max().item<double>();
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), $"{what}: largest difference {worst:G3} (tolerance {tolerance:G3})");
    }
}
