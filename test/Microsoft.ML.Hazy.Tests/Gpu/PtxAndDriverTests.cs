using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Microsoft.ML.Hazy.Gpu;
using Microsoft.ML.Hazy.Gpu.Cuda;
using Microsoft.ML.Hazy.Gpu.Kernels;
using Microsoft.ML.Hazy.Gpu.Runtime;
using Microsoft.ML.Hazy.Kernels;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Gpu;

/// <summary>PTX generation (no GPU needed), the launcher's argument packing, the driver's library names and the no-driver path.</summary>
[TestFixture]
public sealed partial class PtxAndDriverTests
{
    [GeneratedRegex(@"\.param \.align (\d+) \.b8 \w+\[(\d+)\]")]
    private static partial Regex ParamPattern();

    private static IEnumerable<TestCaseData> Entries() => KernelEntry.All.Select(e => new TestCaseData(e.Name).SetName($"Ptx_{e.Name}"));

    [TestCaseSource(nameof(Entries))]
    public void PtxEntryParametersMatchTheArgumentPacking(string name)
    {
        var entry = KernelEntry.All.Single(e => e.Name == name);
        var ptx = PtxCompiler.Compile(entry);
        Assert.That(ptx.Assembly, Does.Contain(".target sm_80"));
        Assert.That(ptx.Assembly, Does.Contain($".visible .entry {ptx.EntryName}("));
        var declared = ParamPattern().Matches(ptx.Assembly).Select(m => (Align: int.Parse(m.Groups[1].Value), Size: int.Parse(m.Groups[2].Value))).ToList();
        var arguments = entry.ParameterTypes.Select(t => t.IsGenericType ? (object)new DeviceView(IntPtr.Zero, 1) : Activator.CreateInstance(t)!).ToArray();
        var packed = ArgumentPacker.Pack(arguments).Slots.Select(s => s.Size).ToList();
        Assert.That(declared.Select(d => d.Size), Is.EqualTo(packed), "parameter sizes: PTX .entry vs the launcher's packing");
        for (int i = 0; i < declared.Count; i++)
            Assert.That(declared[i].Align, Is.EqualTo(entry.ParameterTypes[i].IsGenericType ? 8 : 4), $"alignment of parameter {i}");
    }

    [Test]
    public void PackerWritesViewsAsPointerAndLengthThenTheStructFields()
    {
        var p = new AttentionParams { Heads = 3, QueryLength = 5, KeyLength = 7, HeadDim = 16, Scale = 0.25f, Causal = 1, KeyBlocks = 9 };
        var packer = ArgumentPacker.Pack(new DeviceView(new IntPtr(0x1234_5678_9ABC), 42), p);
        var bytes = packer.Bytes.ToArray();
        Assert.That(packer.Slots, Is.EqualTo(new[] { (0, 16), (16, 48) }));
        Assert.That(BitConverter.ToInt64(bytes, 0), Is.EqualTo(0x1234_5678_9ABC));
        Assert.That(BitConverter.ToInt64(bytes, 8), Is.EqualTo(42));
        Assert.That(BitConverter.ToInt32(bytes, 16), Is.EqualTo(3));
        Assert.That(BitConverter.ToInt32(bytes, 24), Is.EqualTo(7));
        Assert.That(BitConverter.ToSingle(bytes, 32), Is.EqualTo(0.25f));
        Assert.That(BitConverter.ToInt32(bytes, 36), Is.EqualTo(1));
        Assert.That(BitConverter.ToInt32(bytes, 60), Is.EqualTo(9));
        var pointers = packer.Pointers(out var pin);
        try
        {
            Assert.That(pointers[1] - pointers[0], Is.EqualTo((nint)16));
        }
        finally
        {
            pin.Free();
        }
    }

    [Test]
    public void DriverLibraryNamesPerPlatform()
    {
        Assert.That(CudaDriver.LibraryName(OSPlatform.Windows), Is.EqualTo("nvcuda.dll"));
        Assert.That(CudaDriver.LibraryName(OSPlatform.Linux), Is.EqualTo("libcuda.so.1"));
        Assert.That(CudaDriver.LibraryName(OSPlatform.OSX), Is.Null);
    }

    [Test]
    public void MissingDriverLibraryGivesNullAndNamesIt()
    {
        var driver = CudaDriver.TryLoad(out var reason, "libhazy-no-such-cuda.so.1");
        Assert.That(driver, Is.Null);
        Assert.That(reason, Does.Contain("libhazy-no-such-cuda.so.1"));
    }

    [Test]
    public void EnableWithoutDriverRegistersNothingAndSaysWhy()
    {
        Assume.That(CudaDriver.TryLoad(out _), Is.Null, "this machine has a CUDA driver");
        var before = KernelRegistry.Providers.Count;
        var status = HazyGpu.Enable();
        Assert.That(status.Enabled, Is.False);
        Assert.That(status.Reason, Does.Contain(CudaDriver.LibraryName(CudaDriver.CurrentPlatform)!));
        Assert.That(KernelRegistry.Providers.Count, Is.EqualTo(before));
        Assert.That(KernelRegistry.Providers.OfType<GpuKernels>(), Is.Empty);
    }
}
