using System.Reflection;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// What a Hazy component needs from the <see cref="MLContext"/> it was created from: the host (seeded
/// random numbers, logging) and the device policy.
/// </summary>
internal sealed class HazyEnvironment
{
    private HazyEnvironment(IHostEnvironment env, int? gpuDeviceId, bool fallbackToCpu)
    {
        Env = env;
        GpuDeviceId = gpuDeviceId;
        FallbackToCpu = fallbackToCpu;
    }

    public IHostEnvironment Env { get; }

    public int? GpuDeviceId { get; }

    public bool FallbackToCpu { get; }

    public static HazyEnvironment From(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return new HazyEnvironment(mlContext, mlContext.GpuDeviceId, mlContext.FallbackToCpu);
    }

    /// <summary>
    /// ML.NET catalogs keep their environment behind an internal interface. This reads it by
    /// reflection so that <c>mlContext.MulticlassClassification.Trainers.HazyMlp()</c> honours the
    /// context's seed, logging and GPU settings; <c>mlContext.Hazy()</c> needs no reflection.
    /// </summary>
    public static HazyEnvironment From(object catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var env = ReadInternalProperty(catalog, "IInternalCatalog", "Environment") as IHostEnvironment
            ?? throw new InvalidOperationException(
                $"Could not read the MLContext behind {catalog.GetType().Name}. Use the mlContext.Hazy() catalog instead.");
        var gpu = ReadInternalProperty(env, "IHostEnvironmentInternal", "GpuDeviceId") as int?;
        var fallback = ReadInternalProperty(env, "IHostEnvironmentInternal", "FallbackToCpu") as bool? ?? true;
        return new HazyEnvironment(env, gpu, fallback);
    }

    private static object? ReadInternalProperty(object target, string interfaceName, string property)
    {
        foreach (var type in SelfAndBases(target.GetType()))
        {
            var iface = type.GetInterfaces().FirstOrDefault(i => i.Name == interfaceName);
            var prop = iface?.GetProperty(property, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
            if (prop != null)
                return prop.GetValue(target);
        }
        return null;
    }

    private static IEnumerable<Type> SelfAndBases(Type? t)
    {
        for (; t != null; t = t.BaseType)
            yield return t;
    }
}
