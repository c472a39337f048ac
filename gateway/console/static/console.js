// The console's only script: served from the console itself (the Content-Security-Policy allows nothing else).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var print = document.getElementById("print-report");
  if (print) {
    print.addEventListener("click", function () { window.print(); });
  }
});
