using System.Runtime.InteropServices;
using Microsoft.ML.Hazy.Gpu.Runtime;

namespace Microsoft.ML.Hazy.Gpu.Cuda;

/// <summary>
/// Packs kernel arguments in the layout of ILGPU's PTX entry: an <c>ArrayView</c> is 16 bytes (the pointer, then the
/// element count as a 64-bit integer; <c>.param .align 8 .b8 [16]</c>) and a parameter struct is its bytes as laid out
/// by <see cref="Marshal.SizeOf(Type)"/> (<c>.param .align 4 .b8 [size]</c>). <c>cuLaunchKernel</c> takes one pointer
/// per parameter, to that parameter's bytes.
/// </summary>
internal sealed class ArgumentPacker
{
    private readonly List<(int Offset, int Size)> _slots = [];
    private byte[] _bytes = new byte[64];
    private int _length;

    /// <summary>The size and alignment of each parameter, in order.</summary>
    public IReadOnlyList<(int Offset, int Size)> Slots => _slots;

    /// <summary>The packed bytes.</summary>
    public ReadOnlySpan<byte> Bytes => _bytes.AsSpan(0, _length);

    /// <summary>Packs every argument of a kernel launch (<see cref="DeviceView"/>s and parameter structs).</summary>
    public static ArgumentPacker Pack(params object[] arguments)
    {
        var packer = new ArgumentPacker();
        foreach (var argument in arguments)
        {
            if (argument is DeviceView view)
                packer.AddView(view);
            else
                packer.AddStruct(argument);
        }
        return packer;
    }

    /// <summary>Adds an <c>ArrayView</c> parameter.</summary>
    public void AddView(DeviceView view)
    {
        var slot = Reserve(16, 8);
        BitConverter.TryWriteBytes(_bytes.AsSpan(slot, 8), view.Pointer.ToInt64());
        BitConverter.TryWriteBytes(_bytes.AsSpan(slot + 8, 8), view.Length);
    }

    /// <summary>Adds a struct parameter (blittable, 4-byte fields).</summary>
    public void AddStruct(object value)
    {
        int size = Marshal.SizeOf(value.GetType());
        var slot = Reserve(size, 4);
        var handle = GCHandle.Alloc(_bytes, GCHandleType.Pinned);
        try
        {
            Marshal.StructureToPtr(value, handle.AddrOfPinnedObject() + slot, false);
        }
        finally
        {
            handle.Free();
        }
    }

    private int Reserve(int size, int alignment)
    {
        int offset = (_length + alignment - 1) / alignment * alignment;
        if (offset + size > _bytes.Length)
            Array.Resize(ref _bytes, Math.Max(_bytes.Length * 2, offset + size));
        _slots.Add((offset, size));
        _length = offset + size;
        return offset;
    }

    /// <summary>One pointer per parameter into the packed bytes, valid until <paramref name="pin"/> is freed.</summary>
    public IntPtr[] Pointers(out GCHandle pin)
    {
        pin = GCHandle.Alloc(_bytes, GCHandleType.Pinned);
        var start = pin.AddrOfPinnedObject();
        return _slots.Select(s => start + s.Offset).ToArray();
    }
}
