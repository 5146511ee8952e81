using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Microsoft.ML.Hazy.Gpu.Runtime;

/// <summary>
/// Compiles the kernels to PTX with ILGPU's PTX backend (no GPU or CUDA installation needed), once per process, at
/// optimisation level O2 (research note: O2 keeps inline-PTX operands out of local memory). ILGPU caps the
/// <c>.target</c> at sm_80; the driver JIT-compiles that PTX for any newer device.
/// </summary>
internal static class PtxCompiler
{
    private static readonly ConcurrentDictionary<KernelEntry, CompiledPtx> Cache = new();
    private static readonly object Gate = new();
    private static Context? _context;
    private static PTXBackend? _backend;

    /// <summary>The PTX module of <paramref name="entry"/> and its entry function's name.</summary>
    public static CompiledPtx Compile(KernelEntry entry) => Cache.GetOrAdd(entry, CompileUncached);

    private static CompiledPtx CompileUncached(KernelEntry entry)
    {
        lock (Gate)
        {
            _context ??= Context.Create(builder => builder.Optimize(OptimizationLevel.O2).Math(MathMode.Fast).EnableAlgorithms());
            _backend ??= new PTXBackend(_context, CudaArchitecture.SM_80, CudaInstructionSet.ISA_78, null!);
            var description = EntryPointDescription.FromExplicitlyGroupedKernel(entry.Method);
            var compiled = (PTXCompiledKernel)_backend.Compile(description, KernelSpecialization.Empty);
            return new CompiledPtx(entry, compiled.PTXAssembly, compiled.Name);
        }
    }
}

/// <summary>One kernel's PTX text and the name of its <c>.entry</c>.</summary>
internal sealed record CompiledPtx(KernelEntry Entry, string Assembly, string EntryName);
