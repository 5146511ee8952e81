using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>Builds key columns whose values carry names, as ML.NET's own readers do.</summary>
internal static class KeyValueAnnotations
{
    /// <summary>The annotation kind ML.NET reads key names from (<c>MapKeyToValue</c>, evaluators).</summary>
    public const string Kind = "KeyValues";

    /// <summary>A UInt32 key type of <paramref name="names"/>.Count values and annotations naming them in order.</summary>
    public static (KeyDataViewType Type, DataViewSchema.Annotations Annotations) Create(IReadOnlyList<string> names)
    {
        var values = new ReadOnlyMemory<char>[names.Count];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = names[i].AsMemory();
        }

        var builder = new DataViewSchema.Annotations.Builder();
        builder.Add(Kind, new VectorDataViewType(TextDataViewType.Instance, values.Length),
            (ref VBuffer<ReadOnlyMemory<char>> value) => new VBuffer<ReadOnlyMemory<char>>(values.Length, values).CopyTo(ref value));
        return (new KeyDataViewType(typeof(uint), names.Count), builder.ToAnnotations());
    }
}
