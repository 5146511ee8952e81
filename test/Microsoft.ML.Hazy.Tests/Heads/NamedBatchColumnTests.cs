using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Heads;

public sealed class NamedBatchColumnTests
{
    private sealed class Row
    {
        [VectorType(2)]
        public float[] Features = Array.Empty<float>();
        public float Label;
        [VectorType]
        public float[] Second = Array.Empty<float>();
        [VectorType(3)]
        public bool[] Mask = Array.Empty<bool>();
        public uint Group;
    }

    [Test]
    public void BatchesCarryNamedColumnsWithTheirOwnShapeAndPadding()
    {
        var ml = new MLContext(1);
        var rows = new[]
        {
            new Row { Features = new[] { 1f, 2f }, Label = 1, Second = new[] { 1f, 2f, 3f, 4f }, Mask = new[] { true, false, true }, Group = 2 },
            new Row { Features = new[] { 3f, 4f }, Label = 2, Second = new[] { 5f, 6f }, Mask = new[] { false, false, true }, Group = 1 },
        };
        var data = ml.Data.LoadFromEnumerable(rows);
        data = ml.Transforms.Conversion.MapValueToKey("GroupKey", nameof(Row.Group)).Fit(data).Transform(data);
        var batcher = new DataViewBatcher(data, "Features", "Label", LabelKind.Single, columns: new[]
        {
            new BatchColumn("Text2", nameof(Row.Second), BatchColumnKind.Vector, Channels: 2, PaddingValue: -1),
            new BatchColumn("Mask", nameof(Row.Mask), BatchColumnKind.Vector),
            new BatchColumn("Group", "GroupKey", BatchColumnKind.Key),
        });
        using var batch = batcher.GetBatches(8, null, CPU).Single();
        Assert.That(batch.Features.shape, Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(batch.Labels!.data<float>().ToArray(), Is.EqualTo(new[] { 1f, 2f }));
        var second = batch.Column("Text2");
        Assert.That(second.shape, Is.EqualTo(new long[] { 2, 2, 2 }));
        Assert.That(second.data<float>().ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f, 5f, 6f, -1f, -1f }));
        Assert.That(batch.Column("Text2" + TensorBatch.LengthsSuffix).data<long>().ToArray(), Is.EqualTo(new long[] { 2, 1 }));
        Assert.That(batch.Column("Mask").data<float>().ToArray(), Is.EqualTo(new[] { 1f, 0f, 1f, 0f, 0f, 1f }));
        Assert.That(batch.TryGetColumn("Mask" + TensorBatch.LengthsSuffix, out _), Is.False, "a known-size vector has no lengths");
        // Key values in order of first appearance: 2 -> key 1 (index 0), 1 -> key 2 (index 1).
        Assert.That(batch.Column("Group").data<long>().ToArray(), Is.EqualTo(new long[] { 0, 1 }));
        var ex = Assert.Throws<KeyNotFoundException>(() => batch.Column("Weight"));
        Assert.That(ex!.Message, Does.Contain("'Weight'").And.Contain("'Text2'"));
    }

    [Test]
    public void WrongNamedColumnTypeThrowsNamingIt()
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(new[] { new Row { Features = new[] { 1f, 2f }, Second = new[] { 1f }, Mask = new bool[3] } });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new DataViewBatcher(data, "Features", null, LabelKind.Single, columns: new[] { new BatchColumn("Group", nameof(Row.Group), BatchColumnKind.Key) }));
        Assert.That(ex!.Message, Does.Contain("'Group'").And.Contain("key"));
    }
}
