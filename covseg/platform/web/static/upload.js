// Upload the submission with XMLHttpRequest so the page can show its progress.
(function () {
  const form = document.getElementById("upload-form");
  const bar = document.getElementById("progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.hidden = false;
        bar.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = "Uploading: " + bar.value + " %";
      }
    });
    request.addEventListener("load", function () {
      if (request.status < 400) {
        window.location.href = request.responseURL;
      } else {
        document.open();
        document.write(request.responseText);
        document.close();
      }
    });
    request.addEventListener("error", function () {
      status.textContent = "The upload failed; check your connection and try again.";
    });
    document.getElementById("upload-button").disabled = true;
    request.send(new FormData(form));
  });
})();
