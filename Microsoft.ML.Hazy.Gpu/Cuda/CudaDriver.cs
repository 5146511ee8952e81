using System.Runtime.InteropServices;
using System.Text;

namespace Microsoft.ML.Hazy.Gpu.Cuda;

/// <summary>
/// The few CUDA driver-API functions the kernels need, bound at run time from the driver library of this platform
/// (<c>nvcuda.dll</c> on Windows, <c>libcuda.so.1</c> on Linux: the driver ships these, not the toolkit, so any CUDA
/// libtorch the user brings finds them). Everything runs in the device's primary context, the one libtorch uses, and
/// on stream 0 (TorchSharp 0.107 has no stream API, so libtorch runs on the legacy default stream): launches are
/// ordered with libtorch's kernels and need no synchronisation.
/// </summary>
internal sealed unsafe class CudaDriver
{
    private readonly delegate* unmanaged<uint, int> _init;
    private readonly delegate* unmanaged<int*, int> _deviceGetCount;
    private readonly delegate* unmanaged<int*, int, int> _deviceGet;
    private readonly delegate* unmanaged<IntPtr*, int, int> _primaryCtxRetain;
    private readonly delegate* unmanaged<IntPtr*, int> _ctxGetCurrent;
    private readonly delegate* unmanaged<IntPtr, int> _ctxSetCurrent;
    private readonly delegate* unmanaged<IntPtr*, byte*, uint, IntPtr, IntPtr, int> _moduleLoadDataEx;
    private readonly delegate* unmanaged<IntPtr*, IntPtr, byte*, int> _moduleGetFunction;
    private readonly delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, IntPtr*, IntPtr*, int> _launchKernel;
    private readonly delegate* unmanaged<int, byte**, int> _getErrorString;
    private readonly delegate* unmanaged<IntPtr*, uint, int> _eventCreate;
    private readonly delegate* unmanaged<IntPtr, IntPtr, int> _eventRecord;
    private readonly delegate* unmanaged<IntPtr, int> _eventSynchronize;
    private readonly delegate* unmanaged<float*, IntPtr, IntPtr, int> _eventElapsedTime;
    private readonly delegate* unmanaged<IntPtr, int> _eventDestroy;
    private readonly delegate* unmanaged<int> _ctxSynchronize;
    private readonly delegate* unmanaged<IntPtr*, nuint, int> _memAlloc;
    private readonly delegate* unmanaged<IntPtr, int> _memFree;
    private readonly delegate* unmanaged<IntPtr, void*, nuint, int> _memcpyHtoD;
    private readonly delegate* unmanaged<void*, IntPtr, nuint, int> _memcpyDtoH;
    private readonly IntPtr[] _contexts;

    private CudaDriver(IntPtr library, int deviceCount, delegate* unmanaged<int*, int> deviceGetCount)
    {
        _deviceGetCount = deviceGetCount;
        _init = (delegate* unmanaged<uint, int>)Export(library, "cuInit");
        _deviceGet = (delegate* unmanaged<int*, int, int>)Export(library, "cuDeviceGet");
        _primaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)Export(library, "cuDevicePrimaryCtxRetain");
        _ctxGetCurrent = (delegate* unmanaged<IntPtr*, int>)Export(library, "cuCtxGetCurrent");
        _ctxSetCurrent = (delegate* unmanaged<IntPtr, int>)Export(library, "cuCtxSetCurrent");
        _moduleLoadDataEx = (delegate* unmanaged<IntPtr*, byte*, uint, IntPtr, IntPtr, int>)Export(library, "cuModuleLoadDataEx");
        _moduleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)Export(library, "cuModuleGetFunction");
        _launchKernel = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, IntPtr*, IntPtr*, int>)Export(library, "cuLaunchKernel");
        _getErrorString = (delegate* unmanaged<int, byte**, int>)Export(library, "cuGetErrorString");
        _eventCreate = (delegate* unmanaged<IntPtr*, uint, int>)Export(library, "cuEventCreate");
        _eventRecord = (delegate* unmanaged<IntPtr, IntPtr, int>)Export(library, "cuEventRecord");
        _eventSynchronize = (delegate* unmanaged<IntPtr, int>)Export(library, "cuEventSynchronize");
        _eventElapsedTime = (delegate* unmanaged<float*, IntPtr, IntPtr, int>)Export(library, "cuEventElapsedTime");
        _eventDestroy = (delegate* unmanaged<IntPtr, int>)Export(library, "cuEventDestroy_v2");
        _ctxSynchronize = (delegate* unmanaged<int>)Export(library, "cuCtxSynchronize");
        _memAlloc = (delegate* unmanaged<IntPtr*, nuint, int>)Export(library, "cuMemAlloc_v2");
        _memFree = (delegate* unmanaged<IntPtr, int>)Export(library, "cuMemFree_v2");
        _memcpyHtoD = (delegate* unmanaged<IntPtr, void*, nuint, int>)Export(library, "cuMemcpyHtoD_v2");
        _memcpyDtoH = (delegate* unmanaged<void*, IntPtr, nuint, int>)Export(library, "cuMemcpyDtoH_v2");
        _contexts = new IntPtr[deviceCount];
        DeviceCount = deviceCount;
    }

    /// <summary>The number of CUDA devices the driver sees.</summary>
    public int DeviceCount { get; }

    /// <summary>The driver library's name on <paramref name="platform"/> (null where CUDA has no driver: macOS and others).</summary>
    public static string? LibraryName(OSPlatform platform) =>
        platform == OSPlatform.Windows ? "nvcuda.dll" : platform == OSPlatform.Linux ? "libcuda.so.1" : null;

    /// <summary>This process's platform, as <see cref="LibraryName"/> takes it.</summary>
    public static OSPlatform CurrentPlatform =>
        OperatingSystem.IsWindows() ? OSPlatform.Windows : OperatingSystem.IsLinux() ? OSPlatform.Linux : OSPlatform.OSX;

    /// <summary>
    /// Loads the driver from <paramref name="library"/> (default: this platform's name), initialises it and counts the
    /// devices; null with <paramref name="reason"/> saying why when there is no usable driver or device.
    /// </summary>
    public static CudaDriver? TryLoad(out string reason, string? library = null)
    {
        library ??= LibraryName(CurrentPlatform);
        if (library is null)
        {
            reason = $"CUDA has no driver library on {RuntimeInformation.OSDescription}.";
            return null;
        }
        if (!NativeLibrary.TryLoad(library, out var handle))
        {
            reason = $"The CUDA driver library '{library}' could not be loaded (no NVIDIA driver on this machine?).";
            return null;
        }
        try
        {
            var init = (delegate* unmanaged<uint, int>)Export(handle, "cuInit");
            var count = (delegate* unmanaged<int*, int>)Export(handle, "cuDeviceGetCount");
            int status = init(0);
            if (status != 0)
            {
                reason = $"cuInit failed with CUDA error {status} ('{library}').";
                return null;
            }
            int devices;
            status = count(&devices);
            if (status != 0 || devices == 0)
            {
                reason = status != 0 ? $"cuDeviceGetCount failed with CUDA error {status}." : "The CUDA driver sees no device.";
                return null;
            }
            reason = $"CUDA driver '{library}', {devices} device(s).";
            return new CudaDriver(handle, devices, count);
        }
        catch (EntryPointNotFoundException e)
        {
            reason = $"'{library}' lacks a CUDA driver function: {e.Message}";
            return null;
        }
    }

    private static IntPtr Export(IntPtr library, string name) =>
        NativeLibrary.TryGetExport(library, name, out var address) ? address : throw new EntryPointNotFoundException(name);

    /// <summary>Makes <paramref name="device"/>'s primary context current on this thread (autograd runs backward on its own threads).</summary>
    public void MakeCurrent(int device)
    {
        if ((uint)device >= (uint)DeviceCount)
            throw new ArgumentOutOfRangeException(nameof(device), device, $"The driver sees {DeviceCount} device(s).");
        IntPtr context = _contexts[device];
        if (context == IntPtr.Zero)
        {
            int handle;
            Check(_deviceGet(&handle, device), "cuDeviceGet");
            Check(_primaryCtxRetain(&context, handle), "cuDevicePrimaryCtxRetain");
            _contexts[device] = context;
        }
        IntPtr current;
        Check(_ctxGetCurrent(&current), "cuCtxGetCurrent");
        if (current != context)
            Check(_ctxSetCurrent(context), "cuCtxSetCurrent");
    }

    /// <summary>Loads a PTX module into the current context (the driver JIT-compiles it for the device).</summary>
    public IntPtr LoadModule(string ptx)
    {
        var bytes = Encoding.ASCII.GetBytes(ptx + "\0");
        IntPtr module;
        fixed (byte* p = bytes)
            Check(_moduleLoadDataEx(&module, p, 0, IntPtr.Zero, IntPtr.Zero), "cuModuleLoadDataEx");
        return module;
    }

    /// <summary>A function of a loaded module.</summary>
    public IntPtr GetFunction(IntPtr module, string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name + "\0");
        IntPtr function;
        fixed (byte* p = bytes)
            Check(_moduleGetFunction(&function, module, p), $"cuModuleGetFunction({name})");
        return function;
    }

    /// <summary>Launches a function on stream 0 with arguments packed by <see cref="ArgumentPacker"/>.</summary>
    public void Launch(IntPtr function, int groups, int groupSize, ArgumentPacker arguments)
    {
        var pointers = arguments.Pointers(out var pin);
        try
        {
            fixed (IntPtr* args = pointers)
                Check(_launchKernel(function, (uint)groups, 1, 1, (uint)groupSize, 1, 1, 0, IntPtr.Zero, args, null), "cuLaunchKernel");
        }
        finally
        {
            pin.Free();
        }
    }

    /// <summary>Waits for all work in the current context.</summary>
    public void Synchronize() => Check(_ctxSynchronize(), "cuCtxSynchronize");

    /// <summary>Creates an event (for timing on stream 0).</summary>
    public IntPtr CreateEvent()
    {
        IntPtr e;
        Check(_eventCreate(&e, 0), "cuEventCreate");
        return e;
    }

    /// <summary>Records an event on stream 0.</summary>
    public void Record(IntPtr e) => Check(_eventRecord(e, IntPtr.Zero), "cuEventRecord");

    /// <summary>Milliseconds between two recorded events (waits for the second).</summary>
    public float Elapsed(IntPtr start, IntPtr end)
    {
        Check(_eventSynchronize(end), "cuEventSynchronize");
        float ms;
        Check(_eventElapsedTime(&ms, start, end), "cuEventElapsedTime");
        return ms;
    }

    /// <summary>Destroys an event.</summary>
    public void DestroyEvent(IntPtr e) => Check(_eventDestroy(e), "cuEventDestroy");

    /// <summary>Device memory (for the device check, which has no CUDA libtorch).</summary>
    public IntPtr Alloc(long bytes)
    {
        IntPtr p;
        Check(_memAlloc(&p, (nuint)Math.Max(bytes, 4)), "cuMemAlloc");
        return p;
    }

    /// <summary>Frees device memory from <see cref="Alloc"/>.</summary>
    public void Free(IntPtr p) => Check(_memFree(p), "cuMemFree");

    /// <summary>Copies host to device.</summary>
    public void CopyToDevice<T>(IntPtr device, ReadOnlySpan<T> host) where T : unmanaged
    {
        fixed (T* p = host)
            Check(_memcpyHtoD(device, p, (nuint)(host.Length * sizeof(T))), "cuMemcpyHtoD");
    }

    /// <summary>Copies device to host.</summary>
    public void CopyToHost<T>(Span<T> host, IntPtr device) where T : unmanaged
    {
        fixed (T* p = host)
            Check(_memcpyDtoH(p, device, (nuint)(host.Length * sizeof(T))), "cuMemcpyDtoH");
    }

    private void Check(int status, string call)
    {
        if (status == 0)
            return;
        byte* text = null;
        string message = _getErrorString(status, &text) == 0 && text != null ? Marshal.PtrToStringAnsi((IntPtr)text) ?? "" : "";
        throw new InvalidOperationException($"{call} failed with CUDA error {status}: {message}");
    }
}
