namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>Argument checks shared by the attribution methods and metrics, with messages naming what was expected and found.</summary>
internal static class AttributionChecks
{
    public static void Rows(int valueCount, int count, int size, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count, nameof(count));
        if (valueCount != (long)count * size)
            throw new ArgumentException($"'{name}' holds {valueCount} values; expected count × feature size = {count} × {size} = {(long)count * size}.", name);
    }

    public static void Targets(ReadOnlySpan<int> targets, int count, int outputCount, string name)
    {
        if (targets.Length != count)
            throw new ArgumentException($"'{name}' holds {targets.Length} values; expected one per row ({count}).", name);
        for (int i = 0; i < count; i++)
        {
            if ((uint)targets[i] >= (uint)outputCount)
                throw new ArgumentOutOfRangeException(name, targets[i], $"Target class {targets[i]} of row {i} ('{name}'[{i}]) is out of range; expected 0 to {outputCount - 1} (the model has {outputCount} output(s)).");
        }
    }

    public static void Mask(ReadOnlySpan<bool> mask, int size, string name)
    {
        if (!mask.IsEmpty && mask.Length != size)
            throw new ArgumentException($"'{name}' holds {mask.Length} values; expected one per feature ({size}) or none.", name);
    }

    public static void Positive(int value, string name)
    {
        if (value <= 0)
            throw new ArgumentOutOfRangeException(name, value, $"'{name}' must be positive.");
    }
}
