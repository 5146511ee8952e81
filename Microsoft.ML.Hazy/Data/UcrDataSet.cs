using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>
/// The labelled cases of one <c>.ts</c> file, read by <see cref="UcrTimeSeries"/>. A case is a series of
/// <see cref="ChannelCount"/> channels over its own number of time steps, stored time-major: value
/// <c>t * ChannelCount + c</c> is channel <c>c</c> at time step <c>t</c>.
/// </summary>
public sealed class UcrDataSet
{
    private readonly float[][] _series;
    private readonly int[] _lengths;
    private readonly int[] _labelIndices;
    private readonly string[] _classLabels;

    internal UcrDataSet(string name, int channelCount, bool isEqualLength, string[] classLabels, float[][] series, int[] lengths, int[] labelIndices)
    {
        Name = name;
        ChannelCount = channelCount;
        IsEqualLength = isEqualLength;
        _classLabels = classLabels;
        _series = series;
        _lengths = lengths;
        _labelIndices = labelIndices;
        Length = lengths.Max();
        ClassLabels = Array.AsReadOnly(classLabels);
        Series = Array.AsReadOnly(series.Select(s => new ReadOnlyMemory<float>(s)).ToArray());
        Lengths = Array.AsReadOnly(lengths);
        Labels = Array.AsReadOnly(labelIndices.Select(i => classLabels[i]).ToArray());
    }

    /// <summary>The problem name from <c>@problemName</c>, or the file name when the header has none.</summary>
    public string Name { get; }

    /// <summary>The number of channels (dimensions) of every case.</summary>
    public int ChannelCount { get; }

    /// <summary>The number of time steps of the longest case.</summary>
    public int Length { get; }

    /// <summary>
    /// Whether the cases have one length: as the header's <c>@equalLength</c> declares (and the reader checked),
    /// or, when the header does not say, as the cases show.
    /// </summary>
    public bool IsEqualLength { get; }

    /// <summary>The class labels in the order of the header's <c>@classLabel</c> line; key <c>k</c> is label <c>k - 1</c>.</summary>
    public IReadOnlyList<string> ClassLabels { get; }

    /// <summary>The number of cases.</summary>
    public int Count => _series.Length;

    /// <summary>The series of each case, time-major, of <c>Lengths[i] * ChannelCount</c> values; missing values are NaN.</summary>
    public IReadOnlyList<ReadOnlyMemory<float>> Series { get; }

    /// <summary>The number of time steps of each case.</summary>
    public IReadOnlyList<int> Lengths { get; }

    /// <summary>The class label of each case.</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>Returns the cases as a data view that reads this set's arrays without copying them first.</summary>
    /// <remarks>
    /// <list type="table">
    /// <listheader><term>Output column</term><description>Type and content</description></listheader>
    /// <item><term>Label</term><description>Key of UInt32 over <see cref="ClassLabels"/>, named by its <c>KeyValues</c> annotation.</description></item>
    /// <item><term>Features</term><description>Vector of Single, time-major: <c>Length * ChannelCount</c> values when
    /// <see cref="IsEqualLength"/>, otherwise of variable size, <c>Lengths[i] * ChannelCount</c> values for case <c>i</c>.</description></item>
    /// <item><term>Length</term><description>Int32: the number of time steps of the case.</description></item>
    /// </list>
    /// </remarks>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <returns>A data view of <see cref="Count"/> rows that can be shuffled.</returns>
    public IDataView ToDataView(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        var (keyType, keyNames) = KeyValueAnnotations.Create(_classLabels);
        var builder = new DataViewSchema.Builder();
        builder.AddColumn("Label", keyType, keyNames);
        builder.AddColumn("Features", new VectorDataViewType(NumberDataViewType.Single, IsEqualLength ? Length * ChannelCount : 0));
        builder.AddColumn("Length", NumberDataViewType.Int32);

        var series = _series;
        var lengths = _lengths;
        var labels = _labelIndices;
        RowValueGetter<uint> label = (int row, ref uint value) => value = (uint)labels[row] + 1;
        RowValueGetter<VBuffer<float>> features = (int row, ref VBuffer<float> value) =>
        {
            var source = series[row];
            var editor = VBufferEditor.Create(ref value, source.Length);
            source.CopyTo(editor.Values);
            value = editor.Commit();
        };
        RowValueGetter<int> length = (int row, ref int value) => value = lengths[row];
        return new RandomAccessDataView(builder.ToSchema(), series.Length, label, features, length);
    }
}
