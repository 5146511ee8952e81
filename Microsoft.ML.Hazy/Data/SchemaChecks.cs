using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>Column checks shared by Hazy components: each failure names the column, the expected and the actual.</summary>
internal static class SchemaChecks
{
    public static DataViewSchema.Column Find(DataViewSchema schema, string name, string expected)
    {
        ArgumentNullException.ThrowIfNull(name);
        return schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(schema),
                $"Column '{name}' not found in the input data; expected {expected}. Columns present: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}.");
    }

    public static DataViewSchema.Column FloatVectorColumn(DataViewSchema schema, string name, bool requireKnownSize, int? expectedSize = null)
    {
        string expected = expectedSize is int n ? $"a vector of {n} Single values" : requireKnownSize ? "a known-size vector of Single" : "a vector of Single";
        var column = Find(schema, name, expected);
        if (column.Type is not VectorDataViewType vector || vector.ItemType != NumberDataViewType.Single
            || (requireKnownSize && !vector.IsKnownSize) || (expectedSize is int size && vector.Size != size))
        {
            string found = column.Type is VectorDataViewType { IsKnownSize: false } ? $"{column.Type}, a variable-size vector" : $"{column.Type}";
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Column '{name}' has type {found}; expected {expected}.");
        }
        return column;
    }

    public static DataViewSchema.Column LabelColumn(DataViewSchema schema, string name, LabelKind kind)
    {
        string expected = kind switch
        {
            LabelKind.Key => "a key type (use MapValueToKey on the label)",
            LabelKind.Boolean => "Boolean",
            _ => "Single",
        };
        var column = Find(schema, name, expected);
        bool ok = kind switch
        {
            LabelKind.Key => column.Type is KeyDataViewType,
            LabelKind.Boolean => column.Type == BooleanDataViewType.Instance,
            _ => column.Type == NumberDataViewType.Single,
        };
        if (!ok)
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{name}' has type {column.Type}; expected {expected}.");
        return column;
    }
}
