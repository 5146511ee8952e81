using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Training;

public sealed class HazyPredictionTransformerTests
{
    [Test]
    public void SaveAsOnnxAfterDisposeThrowsObjectDisposedAndLeavesTheFileAlone()
    {
        var ml = new MLContext(3);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 1));
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);
        model.Dispose();

        using var stream = new MemoryStream();
        var ex = Assert.Throws<ObjectDisposedException>(() => model.SaveAsOnnx(stream));
        Assert.That(ex!.ObjectName, Does.Contain(nameof(Hazy.Training.HazyPredictionTransformer)));
        Assert.That(stream.Length, Is.Zero);

        var folder = Directory.CreateTempSubdirectory("hazy-disposed-").FullName;
        try
        {
            var path = Path.Combine(folder, "model.onnx");
            File.WriteAllText(path, "previous");
            Assert.Throws<ObjectDisposedException>(() => model.SaveAsOnnx(path));
            Assert.That(File.ReadAllText(path), Is.EqualTo("previous"));
            Assert.That(Directory.GetFiles(folder), Has.Length.EqualTo(1));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        // Scoring goes through the ONNX chain, which does not need the freed network.
        Assert.That(model.Transform(data).GetColumn<float[]>("Score").Count(), Is.EqualTo(60));
    }
}
