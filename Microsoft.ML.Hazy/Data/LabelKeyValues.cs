using System.Reflection;
using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>The key values of a training label, kept so predicted keys map back to the original names.</summary>
internal sealed class LabelKeyValues
{
    private LabelKeyValues(int count, Type? valueType, Array? values)
    {
        Count = count;
        ValueType = valueType;
        Values = values;
    }

    /// <summary>Number of classes (the key's cardinality).</summary>
    public int Count { get; }

    /// <summary>.NET type of the values (string for text), null when the key has no values.</summary>
    public Type? ValueType { get; }

    /// <summary>The values in key order, or null.</summary>
    public Array? Values { get; }

    public static LabelKeyValues FromColumn(DataViewSchema.Column label)
    {
        var key = (KeyDataViewType)label.Type;
        if (key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(label), $"Column '{label.Name}' is a key of unknown or unbounded cardinality; expected a key with a known number of classes.");
        int count = (int)key.Count;
        var annotation = label.Annotations.Schema.GetColumnOrNull("KeyValues");
        if (annotation?.Type is not VectorDataViewType vector)
            return new LabelKeyValues(count, null, null);
        var raw = vector.ItemType.RawType;
        var method = typeof(LabelKeyValues).GetMethod(nameof(Read), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(raw);
        var values = (Array)method.Invoke(null, new object[] { label })!;
        if (raw == typeof(ReadOnlyMemory<char>))
            values = values.Cast<ReadOnlyMemory<char>>().Select(v => v.ToString()).ToArray();
        return new LabelKeyValues(count, values.GetType().GetElementType(), values);
    }

    /// <summary>A key of <paramref name="count"/> classes without values.</summary>
    public static LabelKeyValues Unnamed(int count) => new(count, null, null);

    /// <summary>Key values given in key order (a key of <paramref name="values"/>.Length classes).</summary>
    public static LabelKeyValues FromValues<T>(T[] values) => new(values.Length, typeof(T), values);

    /// <summary>Two stand-in values of <paramref name="valueType"/>, for computing an output schema before training.</summary>
    public static LabelKeyValues Placeholder(Type? valueType)
    {
        if (valueType is null)
            return new LabelKeyValues(2, null, null);
        var values = Array.CreateInstance(valueType, 2);
        values.SetValue(valueType == typeof(string) ? "0" : Convert.ChangeType(0, valueType, System.Globalization.CultureInfo.InvariantCulture), 0);
        values.SetValue(valueType == typeof(string) ? "1" : Convert.ChangeType(1, valueType, System.Globalization.CultureInfo.InvariantCulture), 1);
        return new LabelKeyValues(2, valueType, values);
    }

    /// <summary>Display names, for reports.</summary>
    public string[] Names() =>
        Values is null ? Enumerable.Range(1, Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray()
                       : Values.Cast<object>().Select(v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "").ToArray();

    private static T[] Read<T>(DataViewSchema.Column label)
    {
        var buffer = default(VBuffer<T>);
        label.Annotations.GetValue("KeyValues", ref buffer);
        return buffer.DenseValues().ToArray();
    }
}
